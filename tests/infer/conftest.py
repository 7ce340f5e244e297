"""Fixtures for `gpuhire infer`: synthetic pages, a small trained model, a loopback AWS (moto server).

The model is the trainer's tiny preset trained for a few epochs on synthetic lines: it need not
read well, the tests check where pages go, not what they say (tests/jobs checks recognition).
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from infer_env import BUCKET, REGION


@pytest.fixture(scope="session")
def synth_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic lines: a few PAGE XML pages with their images (20 lines), 20 line images."""
    from jobs.htr.synth import synth

    out = tmp_path_factory.mktemp("pages") / "gt"
    synth(out, 40, 11)
    for txt in out.rglob("*.gt.txt"):  # inference input: images only, no transcriptions
        txt.unlink()
    return out


@pytest.fixture
def pages(synth_pages: Path, tmp_path: Path) -> Path:
    """A fresh, writable copy of `synth_pages`."""
    return Path(shutil.copytree(synth_pages, tmp_path / "in"))


@pytest.fixture(scope="session")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CRNN trained for 2 epochs on 60 synthetic lines (a few seconds on a CPU)."""
    from jobs.htr.config import load_config
    from jobs.htr.dataset import compile_dataset
    from jobs.htr.synth import synth
    from jobs.htr.train import train

    root = tmp_path_factory.mktemp("model")
    synth(root / "gt", 60, 5)
    compile_dataset([root / "gt"], root / "ds", height=64, seed=0)
    train(root / "ds", root / "run", load_config("tiny", epochs=2, patience=20, min_epochs=2), device="cpu")
    return root / "run" / "model.pt"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no real endpoint: nothing can reach AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on loopback as S3 and SQS for this process and the worker processes
    (they inherit AWS_ENDPOINT_URL); the bucket exists."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's backends live in this process and outlast a server: start from empty ones
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()
