"""The queue protocol piece by piece: the launcher's and the worker's real AWS calls are the
ones terraform's policies allow (launcher/providers/aws/ops.py), a redelivered batch is not
recognised twice, and SIGTERM (the spot notice) gives a batch back at once."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from infer_env import BUCKET, REGION

from jobs.fleet.worker import Worker
from launcher.infer.queue import Collected, Fleet
from launcher.providers.aws.ops import FLEET_OPERATIONS, WORKER_OPERATIONS
from launcher.providers.base import FleetSettings


def _recorded(service: str, calls: set[tuple[str, str]]) -> Any:
    client = boto3.client(service, region_name=REGION)
    client.meta.events.register(
        "before-call.*.*", lambda model, **_: calls.add((model.service_model.service_name, model.name)))
    return client


def _worker_args(fleet: Fleet, cache: Path) -> argparse.Namespace:
    assert fleet.queues is not None
    return argparse.Namespace(bucket=BUCKET, job=fleet.job, work_url=fleet.queues.work,
                              done_url=fleet.queues.done, visibility=30, retry_delay=0, idle_exit=1,
                              device="cpu", int8=False, cache=str(cache), pid_file="", name="test-worker",
                              batch_timeout=600)


@pytest.mark.slow
def test_calls_are_the_ones_the_policies_allow(moto_server: str, pages: Path, model: Path,
                                               tmp_path: Path) -> None:
    from jobs.htr.pages import list_pages

    launcher_calls: set[tuple[str, str]] = set()
    worker_calls: set[tuple[str, str]] = set()
    page_list = list_pages([pages])[:4]
    fleet = Fleet(_recorded("s3", launcher_calls), _recorded("sqs", launcher_calls), BUCKET, "infer-proto",
                  FleetSettings(batch_pages=2, visibility_s=30))
    fleet.create_queues()
    fleet.upload_model(model)
    fleet.upload_pages(page_list)
    assert fleet.enqueue(page_list) == 2
    (tmp_path / "cache").mkdir()
    worker = Worker(_recorded("s3", worker_calls), _recorded("sqs", worker_calls),
                    _worker_args(fleet, tmp_path / "cache"))
    assert worker.run() == 0  # both batches, then idle for a second: exits
    seen = Collected()
    out = tmp_path / "out"
    by_key = {p.key: p for p in page_list}
    deadline = time.monotonic() + 30
    while len(seen.done) < len(by_key):
        assert time.monotonic() < deadline, f"results never arrived: {seen}"
        fleet.collect(by_key, out, seen, wait_s=0)
    assert fleet.backlog() == (0, 0)
    fleet.delete_queues()
    for page in page_list:
        assert all((out / rel).exists() for rel in page.outputs)

    def table(calls: set[tuple[str, str]]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for service, op in calls:
            out.setdefault(service, set()).add(op)
        return out

    for service, ops in table(launcher_calls).items():
        assert ops <= FLEET_OPERATIONS[service], f"launcher {service} calls not in FLEET_OPERATIONS"
    for service, ops in table(worker_calls).items():
        assert ops <= WORKER_OPERATIONS[service], f"worker {service} calls not in WORKER_OPERATIONS"
    assert ("sqs", "ChangeMessageVisibility") not in launcher_calls


@pytest.mark.slow
def test_a_redelivered_batch_only_reports_what_is_already_done(moto_server: str, pages: Path, model: Path,
                                                               tmp_path: Path) -> None:
    from jobs.htr.pages import list_pages

    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    page_list = list_pages([pages])[:2]
    fleet = Fleet(s3, sqs, BUCKET, "infer-again", FleetSettings(batch_pages=2, visibility_s=30))
    fleet.create_queues()
    fleet.upload_model(model)
    fleet.upload_pages(page_list)
    fleet.enqueue(page_list)
    fleet.enqueue(page_list, first_batch=1)  # the same pages again, as a redelivery would bring them
    (tmp_path / "cache").mkdir()
    Worker(s3, sqs, _worker_args(fleet, tmp_path / "cache")).run()
    assert fleet.queues is not None
    reports = [json.loads(m["Body"]) for m in sqs.receive_message(
        QueueUrl=fleet.queues.done, MaxNumberOfMessages=10).get("Messages", [])]
    assert len(reports) == 2  # SQS gives no order: whichever batch came first did the work
    recognised = [r for r in reports if all(item["lines"] > 0 for item in r["done"])]
    skipped = [r for r in reports if [item["lines"] for item in r["done"]] == [0, 0]]
    assert len(recognised) == 1 and len(skipped) == 1  # found done: not recognised again


def _start_worker(queues: Any, job: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "worker.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.fleet.worker", "--bucket", BUCKET,
                                 "--job", job, "--work-url", queues.work, "--done-url", queues.done,
                                 "--visibility", "600", "--idle-exit", "60", "--device", "cpu",
                                 "--pid-file", str(tmp_path / "pid")], stdout=fh, stderr=subprocess.STDOUT)
    return proc, log


def _wait_for(what: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_gives_the_batch_back_at_once(moto_server: str, pages: Path, model: Path,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from moto.s3.models import S3Backend

    from jobs.htr.pages import list_pages

    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    page_list = list_pages([pages])[:3]
    fleet = Fleet(s3, sqs, BUCKET, "infer-term", FleetSettings(batch_pages=3, visibility_s=600))
    queues = fleet.create_queues()
    fleet.upload_model(model)
    fleet.upload_pages(page_list)
    fleet.enqueue(page_list)
    # The worker's fetch of the batch's last page hangs in (this process's) moto until the
    # notice is sent: SIGTERM lands mid-batch however slow or fast this machine is.
    held, release = threading.Event(), threading.Event()
    real_get = S3Backend.get_object

    def slow_get(self: Any, bucket_name: str, key_name: str, *args: Any, **kwargs: Any) -> Any:
        if key_name.endswith(page_list[-1].key) and "/pages/" in key_name and not release.is_set():
            held.set()
            release.wait(30)
        return real_get(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "get_object", slow_get)
    proc, log = _start_worker(queues, "infer-term", tmp_path)
    try:
        _wait_for(held.is_set)
        assert int((tmp_path / "pid").read_text()) == proc.pid
        os.kill(proc.pid, signal.SIGTERM)  # what the spot watcher does on the two-minute notice
        time.sleep(0.5)
    finally:
        release.set()
    assert proc.wait(timeout=60) == 143
    assert "batch given back" in log.read_text()
    # visible again now, not after the 600 s lease
    again = sqs.receive_message(QueueUrl=queues.work, WaitTimeSeconds=2,
                                AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
    assert len(again) == 1 and json.loads(again[0]["Body"])["batch"] == 0
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "1"  # the interruption cost no try


@pytest.mark.slow
def test_sigterm_while_waiting_for_a_batch_exits_at_once(moto_server: str, tmp_path: Path) -> None:
    """botocore retries any Exception raised inside a request: a notice that lands in the long
    poll must still end the worker, not be retried away for minutes."""
    fleet = Fleet(boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION), BUCKET,
                  "infer-idle", FleetSettings(batch_pages=3, visibility_s=600))
    proc, log = _start_worker(fleet.create_queues(), "infer-idle", tmp_path)
    _wait_for(lambda: "waiting for batches" in log.read_text())
    time.sleep(1)  # inside the 20 s long poll
    sent = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert time.monotonic() - sent < 10
    assert "stopped (SIGTERM) while waiting" in log.read_text()


@pytest.mark.slow
def test_a_batch_that_breaks_the_worker_is_dead_lettered_with_the_reason(moto_server: str, pages: Path,
                                                                        tmp_path: Path) -> None:
    from jobs.htr.pages import list_pages

    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    page_list = list_pages([pages])[:2]
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"no checkpoint at all")
    fleet = Fleet(s3, sqs, BUCKET, "infer-broken", FleetSettings(batch_pages=2, visibility_s=30, max_receives=1))
    fleet.create_queues()
    fleet.upload_model(bogus)
    fleet.upload_pages(page_list)
    fleet.enqueue(page_list)
    (tmp_path / "cache").mkdir()
    Worker(s3, sqs, _worker_args(fleet, tmp_path / "cache")).run()
    seen = Collected()
    by_key = {p.key: p for p in page_list}
    deadline = time.monotonic() + 30
    while len(seen.dead) < len(by_key):
        assert time.monotonic() < deadline, f"never dead-lettered: {seen}"
        fleet.collect(by_key, tmp_path / "out", seen, wait_s=0)
    assert all("HtrError" in reason or "model" in reason for reason in seen.dead.values()), seen.dead
