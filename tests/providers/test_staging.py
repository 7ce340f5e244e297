"""S3 staging against a moto server on loopback: content-hashed data sent once, checkpoints
tagged for the lifecycle, and the box-side script (real curl, real sha256sum) fetching the data
from presigned URLs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from launcher.providers.aws.staging import S3Stage, StagedData, tree_digest

BUCKET = "gpuhire-staging-test"


@pytest.fixture
def s3(aws_env: None) -> Iterator[object]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
                          config=Config(retries={"max_attempts": 1}))
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "dataset"
    (folder / "sub").mkdir(parents=True)
    (folder / "images.u8").write_bytes(bytes(range(256)) * 4000)
    (folder / "meta.json").write_text('{"version": 1}')
    (folder / "sub" / "codec.json").write_text('["a", "b"]')
    return folder


def test_unchanged_data_is_not_sent_again(s3, dataset: Path) -> None:
    stage = S3Stage(s3, BUCKET)
    first = stage.put_dataset(dataset)
    assert first.sent_bytes == 256 * 4000 + len('{"version": 1}') + len('["a", "b"]')
    assert first.prefix == f"data/{tree_digest(dataset)[0]}/"
    again = stage.put_dataset(dataset)
    assert again.sent_bytes == 0 and again.prefix == first.prefix
    (dataset / "meta.json").write_text('{"version": 2}')
    changed = stage.put_dataset(dataset)
    assert changed.prefix != first.prefix and changed.sent_bytes > 0


def test_checkpoints_are_tagged_for_the_lifecycle(s3, tmp_path: Path) -> None:
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"weights")
    key = S3Stage(s3, BUCKET).put_checkpoint("train-1", ckpt, "last.pt")
    assert key == "jobs/train-1/checkpoints/last.pt"
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    assert tags == [{"Key": "gpuhire:kind", "Value": "checkpoint"}]


def test_box_fetches_the_data_with_curl_and_checks_it(s3, dataset: Path, tmp_path: Path) -> None:
    stage = S3Stage(s3, BUCKET)
    staged = stage.put_dataset(dataset)
    box = tmp_path / "box" / "dataset"
    script = stage.fetch_script(staged, str(box))
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in staged.files:
        assert (box / name).read_bytes() == (dataset / name).read_bytes()
    # a tampered object is refused by the checksum, and nothing half-written is left in place
    s3.put_object(Bucket=BUCKET, Key=staged.prefix + "meta.json", Body=b"{}")
    other = tmp_path / "box2"
    done = subprocess.run(["bash", "-c", stage.fetch_script(staged, str(other))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and not (other / "meta.json").exists()


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-east-1"])
def test_the_box_gets_sigv4_urls_on_the_buckets_regional_endpoint(aws_env: None, region: str) -> None:
    """The launcher's S3 client (aws_client.client) presigns with SigV4 on the Regional
    endpoint: botocore's default is SigV2 on the global one, which S3 refuses for buckets made
    since June 2020 (and the global endpoint fails for Regions launched after March 2019)."""
    from launcher.providers.aws.client import client

    stage = S3Stage(client(boto3.Session(region_name=region), "s3"), "gpuhire-x")
    script = stage.fetch_script(StagedData("data/abc/", {"meta.json": "0" * 64}, 0), "/box/dataset")
    assert f"https://gpuhire-x.s3.{region}.amazonaws.com/data/abc/meta.json?" in script
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in script and f"%2F{region}%2Fs3%2F" in script
    assert "AWSAccessKeyId=" not in script
