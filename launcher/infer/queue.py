"""Inference across a fleet: pages in batches on an SQS queue, results in S3 (launcher side).

    s3://BUCKET/jobs/<job>/model.pt                   the model, sent once (model.mlmodel or
                                                      model.safetensors: a kraken model)
    s3://BUCKET/jobs/<job>/segment/<name>             the user's segmentation model, if any
    s3://BUCKET/jobs/<job>/pages/<key>                each page, its image beside an XML
    s3://BUCKET/jobs/<job>/results/<key>, ....txt     what the workers recognised
    SQS gpuhire-<job>-work   one message per batch of pages (with the job's options: layout
                             format, segmentation model); visibility timeout V, which a
                             worker extends while it works (a killed worker stops extending it,
                             so its batch comes back to another worker after at most V)
    SQS gpuhire-<job>-dead   the work queue's dead-letter queue: a batch received
                             `max_receives` times without finishing ends here
    SQS gpuhire-<job>-done   one message per batch attempt: which pages are done, which failed

The worker (jobs/fleet/worker.py, on each instance) skips pages whose results exist, so a
redelivered batch costs only its unfinished pages; the launcher collects results by page key
into the output folder, so a page done twice is written once. boto3 clients are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.fleet import FLEET_TAGGING
from launcher.errors import ProviderError
from launcher.providers.aws.client import aws_errors
from launcher.providers.base import FleetSettings, Queues

if TYPE_CHECKING:
    from jobs.htr.pages import Page

MODEL_SUFFIXES = (".pt", ".mlmodel", ".safetensors")  # gpuhire's model, kraken's two formats
MODEL_KEYS = tuple("model" + s for s in MODEL_SUFFIXES)
# Everything a fleet job puts in the bucket is tagged, so the bucket's lifecycle rule expires it
# (terraform: expire-fleet-files): scans do not linger in S3 once their text is home.
SEND_BATCH = 10  # SQS takes at most 10 messages per SendMessageBatch
TRANSFERS = 16  # S3 uploads and downloads in flight at once
MAX_MESSAGE_BYTES = 256 * 1024 - 1024  # SQS's limit per message and per batch call, with a margin


@dataclass
class Collected:
    """Pages as the launcher has seen them end."""

    done: dict[str, int] = field(default_factory=dict)  # key -> lines
    dead: dict[str, str] = field(default_factory=dict)  # key -> reason
    failures: dict[str, str] = field(default_factory=dict)  # key -> last failure reason
    busy_s: float = 0.0  # seconds workers spent on the batches reported so far
    segment_s: float = 0.0  # of busy_s: layout analysis of page scans
    segmented: int = 0  # page images (scan frames) the workers segmented


def _packed(entries: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Groups of at most SEND_BATCH entries and MAX_MESSAGE_BYTES in all."""
    groups: list[list[dict[str, str]]] = []
    group: list[dict[str, str]] = []
    used = 0
    for entry in entries:
        n = len(entry["MessageBody"].encode())
        if group and (len(group) == SEND_BATCH or used + n > MAX_MESSAGE_BYTES):
            groups.append(group)
            group, used = [], 0
        group.append(entry)
        used += n
    if group:
        groups.append(group)
    return groups


def model_suffix(model: Path) -> str:
    """The suffix the model travels under (the worker reads kraken's formats by it): its own when
    it is one of the three kinds', else the one its first bytes say (jobs.htr.kraken_recognise)."""
    from jobs.htr.kraken_recognise import kraken_format

    suffix = model.suffix.lower()
    return suffix if suffix in MODEL_SUFFIXES else (kraken_format(model) or ".pt")


def job_prefix(job: str) -> str:
    return f"jobs/{job}/"


def page_message(job: str, batch: int, pages: Sequence[Page], model_key: str,
                 options: dict[str, object] | None = None) -> str:
    return json.dumps({
        "job": job, "batch": batch, "model": model_key, **(options or {}),
        "pages": [p.to_message() for p in pages],
    })


class Fleet:
    """The launcher's half of a fleet job: queues, uploads, and collecting results."""

    def __init__(self, s3: Any, sqs: Any, bucket: str, job: str,
                 settings: FleetSettings | None = None) -> None:
        self.s3 = s3
        self.sqs = sqs
        self.bucket = bucket
        self.job = job
        self.settings = settings or FleetSettings()
        self.prefix = job_prefix(job)
        self.queues: Queues | None = None
        self.batches: dict[int, list[str]] = {}  # batch number -> page keys
        self.options: dict[str, object] = {}  # sent with each batch: format, segment_model (s3 key)
        self.model_suffix = ".pt"  # the model file's (upload_model sets it)

    # -- set-up ---------------------------------------------------------------------------
    def create_queues(self) -> Queues:
        """The three queues of the job (CreateQueue returns an existing queue's URL: a rerun
        of the same job finds what is still queued)."""
        s = self.settings
        tags = {"gpuhire:job": self.job}
        name = f"gpuhire-{self.job}"[:70]
        with aws_errors("create the job's SQS queues"):
            dead = self.sqs.create_queue(
                QueueName=f"{name}-dead", tags=tags,
                Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)})["QueueUrl"]
            dead_arn = self.sqs.get_queue_attributes(
                QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            work = self.sqs.create_queue(QueueName=f"{name}-work", tags=tags, Attributes={
                "VisibilityTimeout": str(s.visibility_s),
                "MessageRetentionPeriod": str(s.retention_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn,
                                             "maxReceiveCount": str(s.max_receives)}),
            })["QueueUrl"]
            done = self.sqs.create_queue(
                QueueName=f"{name}-done", tags=tags,
                Attributes={"MessageRetentionPeriod": str(s.retention_s)})["QueueUrl"]
        self.queues = Queues(work, dead, done)
        return self.queues

    def model_key(self) -> str:
        """`jobs/<job>/model<suffix>`: the model keeps its file's suffix (.pt, .mlmodel, .safetensors)."""
        return self.prefix + "model" + self.model_suffix

    def upload_model(self, model: Path) -> str:
        self.model_suffix = model_suffix(model)
        key = self.model_key()
        with aws_errors(f"upload the model to s3://{self.bucket}/{key}"):
            self.s3.upload_file(str(model), self.bucket, key, ExtraArgs={"Tagging": FLEET_TAGGING})
        return key

    def upload_segment_model(self, model: Path) -> str:
        """The user's segmentation model, under its own name (kraken reads the format from it)."""
        key = f"{self.prefix}segment/{model.name}"
        with aws_errors(f"upload the segmentation model to s3://{self.bucket}/{key}"):
            self.s3.upload_file(str(model), self.bucket, key, ExtraArgs={"Tagging": FLEET_TAGGING})
        self.options["segment_model"] = key
        return key

    def upload_pages(self, pages: Sequence[Page], progress: Callable[[int], None] = lambda n: None) -> None:
        """Each page's files under pages/<key> (the image beside its XML), TRANSFERS at a time
        (boto3 clients are thread-safe; one file at a time would take hours for an archive)."""

        def one(page: Page) -> None:
            for local, rel in page.files():
                self.s3.upload_file(str(local), self.bucket, f"{self.prefix}pages/{rel}",
                                    ExtraArgs={"Tagging": FLEET_TAGGING})

        with aws_errors(f"upload the pages to s3://{self.bucket}/{self.prefix}pages/"), \
                ThreadPoolExecutor(TRANSFERS) as pool:
            for _ in pool.map(one, pages):
                progress(1)

    def enqueue(self, pages: Sequence[Page], first_batch: int = 0) -> int:
        """Batches of `batch_pages` pages on the work queue; returns the number of batches.

        SendMessageBatch takes at most 10 messages and 256 KiB in all: entries are packed by size.
        """
        assert self.queues is not None, "create_queues first"
        size = self.settings.batch_pages
        entries = []
        for n, start in enumerate(range(0, len(pages), size), start=first_batch):
            chunk = pages[start:start + size]
            self.batches[n] = [p.key for p in chunk]
            body = page_message(self.job, n, chunk, self.model_key(), self.options)
            if len(body.encode()) > MAX_MESSAGE_BYTES:
                raise ProviderError(f"a batch of {len(chunk)} pages is {len(body.encode()):,} bytes, over "
                                    "SQS's 256 KiB message limit", "lower [infer] batch_pages")
            entries.append({"Id": str(n), "MessageBody": body})
        with aws_errors("queue the pages"):
            for group in _packed(entries):
                sent = self.sqs.send_message_batch(QueueUrl=self.queues.work, Entries=group)
                if sent.get("Failed"):
                    raise ProviderError(f"SQS refused {len(sent['Failed'])} batch message(s): "
                                        f"{sent['Failed'][0].get('Message', '')}",
                                        "run the same command again: pages done so far are skipped")
        return len(entries)

    # -- collecting -----------------------------------------------------------------------
    def result_key(self, rel: str) -> str:
        return f"{self.prefix}results/{rel}"

    def _messages(self, url: str, wait_s: int) -> list[dict[str, Any]]:
        with aws_errors("read the job's queues"):
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
        return list(got.get("Messages", []))

    def _delete(self, url: str, messages: list[dict[str, Any]]) -> None:
        if messages:
            with aws_errors("acknowledge queue messages"):
                self.sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])

    def collect(self, pages: dict[str, Page], out_dir: Path, seen: Collected, wait_s: int = 1,
                on_page: Callable[[str, int], None] = lambda key, lines: None) -> int:
        """Fetch the results of newly finished pages into `out_dir`; record failures and pages
        dead-lettered. Returns how many pages ended (done or dead) in this call."""
        assert self.queues is not None, "create_queues first"
        ended = 0
        messages = self._messages(self.queues.done, wait_s)
        fresh: dict[str, int] = {}
        for m in messages:
            body = json.loads(m["Body"])
            seen.busy_s += float(body.get("seconds", 0.0))
            seen.segment_s += float(body.get("segment_s", 0.0))
            seen.segmented += int(body.get("segmented", 0))
            for item in body.get("failed", []):
                seen.failures[item["key"]] = item.get("reason", "failed")
            for item in body.get("done", []):
                key = item["key"]
                if key in seen.done or key not in pages:
                    continue  # a page done twice (a redelivered batch) is written once
                fresh[key] = max(fresh.get(key, 0), int(item.get("lines", 0)))
        with ThreadPoolExecutor(TRANSFERS) as pool:
            for key in pool.map(lambda k: self._download(pages[k], out_dir), fresh):
                seen.done[key] = fresh[key]
                seen.dead.pop(key, None)
                ended += 1
                on_page(key, seen.done[key])
        self._delete(self.queues.done, messages)  # only once every result is home
        if messages:
            return ended
        dead = self._messages(self.queues.dead, 0)  # only once the done queue is drained
        for m in dead:
            body = json.loads(m["Body"])
            for item in body.get("pages", []):
                key = item["key"]
                if key in pages and key not in seen.done and key not in seen.dead:
                    seen.dead[key] = seen.failures.get(key, "never finished (worker lost each time)")
                    ended += 1
                    on_page(key, -1)
        self._delete(self.queues.dead, dead)
        return ended

    def _download(self, page: Page, out_dir: Path) -> str:
        with aws_errors(f"fetch the results of {page.key}"):
            for rel in page.outputs:
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.part")
                self.s3.download_file(self.bucket, self.result_key(rel), str(tmp))
                tmp.replace(target)
        return page.key

    def backlog(self) -> tuple[int, int]:
        """Batches waiting for a worker, and batches a worker holds (as SQS counts them)."""
        assert self.queues is not None
        with aws_errors("read the work queue's size"):
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queues.work, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return (int(attrs.get("ApproximateNumberOfMessages", 0)),
                int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)))

    def delete_queues(self) -> None:
        """The queues go when the job has ended; results stay in S3 (lifecycle rules expire them)."""
        if self.queues is None:
            return
        with aws_errors("delete the job's SQS queues"):
            for url in (self.queues.work, self.queues.done, self.queues.dead):
                self.sqs.delete_queue(QueueUrl=url)
        self.queues = None


# -- what a fleet leaves behind (a rerun collects it, `gpuhire gc` deletes it) -------------------
def queue_names(job: str) -> tuple[str, str, str]:
    """The work, dead-letter and done queues' names of a job (as Fleet.create_queues makes them)."""
    name = f"gpuhire-{job}"[:70]
    return f"{name}-work", f"{name}-dead", f"{name}-done"


def existing_queues(sqs: Any, job: str) -> list[str]:
    """The URLs of the job's queues that still exist (by name: no account-wide ListQueues)."""
    urls = []
    for name in queue_names(job):
        try:
            with aws_errors(f"look up the SQS queue {name}"):
                urls.append(str(sqs.get_queue_url(QueueName=name)["QueueUrl"]))
        except ProviderError as exc:
            if "NonExistentQueue" not in str(exc) and "QueueDoesNotExist" not in str(exc):
                raise
    return urls


def delete_queue_urls(sqs: Any, urls: Sequence[str]) -> None:
    for url in urls:
        try:
            with aws_errors(f"delete the SQS queue {url}"):
                sqs.delete_queue(QueueUrl=url)
        except ProviderError as exc:
            if "NonExistentQueue" not in str(exc) and "QueueDoesNotExist" not in str(exc):
                raise


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix` (ListObjectsV2, 1,000 a page)."""
    keys: list[str] = []
    args: dict[str, str] = {"Bucket": bucket, "Prefix": prefix}
    with aws_errors(f"list s3://{bucket}/{prefix}"):
        while True:
            page = s3.list_objects_v2(**args)
            keys.extend(str(o["Key"]) for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return keys
            args["ContinuationToken"] = str(page["NextContinuationToken"])


def staged_keys(s3: Any, bucket: str, job: str) -> list[str]:
    """What the launcher staged for a fleet job: its model and its pages (not its results,
    which a rerun collects and the bucket's lifecycle rule expires)."""
    prefix = job_prefix(job)
    model = [k for k in list_keys(s3, bucket, prefix + "model.") if k[len(prefix):] in MODEL_KEYS]
    return model + list_keys(s3, bucket, prefix + "segment/") + list_keys(s3, bucket, prefix + "pages/")


def delete_keys(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    """DeleteObjects, 1,000 keys a call; a key that would not go is an error."""
    for at in range(0, len(keys), 1000):
        chunk = keys[at:at + 1000]
        with aws_errors(f"delete {len(chunk)} staged object(s) in s3://{bucket}"):
            reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk],
                                                             "Quiet": True})
        if reply.get("Errors"):
            first = reply["Errors"][0]
            raise ProviderError(f"S3 kept {len(reply['Errors'])} object(s), e.g. {first.get('Key')}: "
                                f"{first.get('Message', first.get('Code', ''))}",
                                "check the bucket policy; run `gpuhire gc` again")


def collect_finished(s3: Any, bucket: str, job: str, pages: Sequence[Page], out_dir: Path) -> list[Page]:
    """Fetch into `out_dir` the results a fleet job's workers already wrote for `pages` (a page
    counts when every output is there: the worker uploads the text file last); returns those."""
    written = set(list_keys(s3, bucket, f"{job_prefix(job)}results/"))
    fleet = Fleet(s3, None, bucket, job)
    ready = [p for p in pages if all(fleet.result_key(rel) in written for rel in p.outputs)]
    with ThreadPoolExecutor(TRANSFERS) as pool:
        list(pool.map(lambda p: fleet._download(p, out_dir), ready))
    return ready
