"""Staging through S3: data content-hashed, so unchanged data is never sent twice; checkpoints
kept in S3 as they are written.

    s3://BUCKET/data/<sha256 of the dataset>/...        the compiled dataset, once per content
    s3://BUCKET/data/<sha256>/MANIFEST.json              written last: the upload is complete
    s3://BUCKET/jobs/<job>/checkpoints/<file>            tagged gpuhire:kind=checkpoint (lifecycle)

The box needs no AWS credentials for the data: the launcher hands it short-lived presigned
URLs and it fetches them with curl (resumable, retried). boto3 is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.providers.aws.client import aws_errors

MANIFEST = "MANIFEST.json"
CHECKPOINT_TAG = "gpuhire%3Akind=checkpoint"  # URL-encoded `gpuhire:kind=checkpoint`
URL_TTL_S = 6 * 3600


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(folder: Path) -> tuple[str, dict[str, str]]:
    """The sha256 of a folder's content (names and bytes), and each file's own sha256."""
    files = {p.relative_to(folder).as_posix(): _sha256(p)
             for p in sorted(folder.rglob("*")) if p.is_file()}
    whole = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return whole, files


@dataclass(frozen=True)
class StagedData:
    prefix: str  # data/<sha256>/
    files: dict[str, str]  # relative name -> sha256
    sent_bytes: int  # 0 when the same content was there already


class S3Stage:
    """One bucket, as the launcher uses it for a job."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def _exists(self, key: str) -> bool:
        import botocore.exceptions as bex

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put_dataset(self, folder: Path) -> StagedData:
        """Upload `folder` under data/<its sha256>/ unless that content is there already."""
        digest, files = tree_digest(folder)
        prefix = f"data/{digest}/"
        with aws_errors(f"stage the data to s3://{self.bucket}/{prefix}"):
            if self._exists(prefix + MANIFEST):
                return StagedData(prefix, files, 0)
            sent = 0
            for name in files:
                path = folder / name
                self.s3.upload_file(str(path), self.bucket, prefix + name)
                sent += path.stat().st_size
            self.s3.put_object(Bucket=self.bucket, Key=prefix + MANIFEST,
                               Body=json.dumps(files, sort_keys=True).encode())
        return StagedData(prefix, files, sent)

    def put_checkpoint(self, job: str, local: Path, name: str) -> str:
        """Keep a checkpoint in S3 (tagged, so the bucket's lifecycle expires old ones)."""
        key = f"jobs/{job}/checkpoints/{name}"
        with aws_errors(f"copy checkpoint {name} to s3://{self.bucket}/{key}"):
            self.s3.upload_file(str(local), self.bucket, key,
                                ExtraArgs={"Tagging": CHECKPOINT_TAG})
        return key

    def fetch_script(self, staged: StagedData, dest: str, ttl_s: int = URL_TTL_S) -> str:
        """Shell for the box: download the staged files with curl from presigned URLs and
        check every sha256; exits non-zero if anything is missing or wrong."""
        lines = ["set -eu", f"mkdir -p {shlex.quote(dest)}", f"cd {shlex.quote(dest)}"]
        for name, sha in staged.files.items():
            with aws_errors("presign a download URL"):
                url = self.s3.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": staged.prefix + name},
                    ExpiresIn=ttl_s,
                )
            q = shlex.quote(name)
            lines += [
                f"mkdir -p $(dirname {q})",
                f"curl -fsS --retry 5 --retry-all-errors -C - -o {q}.part {shlex.quote(url)} "
                f"|| curl -fsS --retry 5 -o {q}.part {shlex.quote(url)}",
                f'echo "{sha}  {q}.part" | sha256sum -c --quiet -',
                f"mv {q}.part {q}",
            ]
        return "\n".join(lines) + "\n"
