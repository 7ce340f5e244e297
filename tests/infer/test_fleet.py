"""The fleet on loopback: a moto server as SQS and S3, worker processes on this machine as the
instances (`[infer] fleet = "local"`), the real model. One worker is killed in the middle of a
batch: every page still ends in the output exactly once, and a rerun sends nothing again."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import boto3
import pytest
from infer_env import BUCKET, REGION, fleet_config
from typer.testing import CliRunner

from launcher.cli import app
from ledger.book import Ledger
from ledger.db import open_engine

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    return fleet_config(tmp_path, batch_pages=3, visibility_s=4, max_receives=2, idle_exit_s=30)


def _infer(db: str, cfg: Path, pages: Path, model: Path, out: Path, instances: int) -> object:
    return CliRunner().invoke(app, ["--db", db, "--config", str(cfg), "infer", str(pages), "--model", str(model),
                                    "--out", str(out), "--gpu", "t4", "--instances", str(instances), "--yes",
                                    "--format", "json"])


class Killer(threading.Thread):
    """SIGKILLs the first worker seen to have taken a batch (its first batch includes loading
    torch and the model: seconds in which it holds the batch without finishing it)."""

    def __init__(self, logs: Path) -> None:
        super().__init__(daemon=True)
        self.logs = logs
        self.killed: tuple[str, int, str] | None = None  # worker log, pid, batch
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.done.is_set():
            for log in sorted(self.logs.glob("worker-*.log")):
                m = re.search(r"\(pid (\d+)\): batch (\d+) received", log.read_text(errors="replace"))
                if m:
                    os.killpg(int(m.group(1)), signal.SIGKILL)
                    self.killed = (log.name, int(m.group(1)), m.group(2))
                    return
            time.sleep(0.05)


def _keys(pages: Path) -> set[str]:
    from jobs.htr.pages import list_pages

    return {p.key for p in list_pages([pages])}


def _outputs(pages: Path) -> set[str]:
    from jobs.htr.pages import list_pages

    return {rel for p in list_pages([pages]) for rel in p.outputs}


def _objects() -> int:
    s3 = boto3.client("s3", region_name=REGION)
    return sum(len(page.get("Contents", [])) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET))


def test_killed_worker_loses_no_page_and_a_rerun_sends_nothing(moto_server: str, pages: Path, model: Path,
                                                              tmp_path: Path, sqlite_db: str) -> None:
    out = tmp_path / "out"
    killer = Killer(out / ".gpuhire" / "workers")
    killer.start()
    result = _infer(sqlite_db, _config(tmp_path), pages, model, out, instances=3)
    killer.done.set()
    assert result.exit_code == 0, result.output
    assert killer.killed is not None, "no worker was seen taking a batch"
    log, _, batch = killer.killed
    killed_log = (out / ".gpuhire" / "workers" / log).read_text()
    assert f"batch {batch} received" in killed_log and "batch done" not in killed_log  # killed mid-batch

    data = json.loads(result.stdout)
    keys = _keys(pages)
    assert data["status"] == "done" and data["done"] == len(keys) and not data["dead"]
    manifest = [json.loads(x)["page"] for x in (out / ".gpuhire" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(manifest) == sorted(keys)  # every page recorded exactly once
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
               and ".gpuhire" not in p.relative_to(out).parts}
    assert written == _outputs(pages)  # each page's outputs, nothing else, nothing missing
    for key in keys:
        if key.endswith(".xml"):
            assert "TextEquiv" in (out / key).read_text()

    book = Ledger(open_engine(sqlite_db))
    sessions = [v.session for v in book.sessions(job_id=data["job"])]
    assert len(sessions) >= 4  # three workers and the killed one's replacement
    assert all(s.end_at is not None for s in sessions)  # no worker left running
    assert "unknown" in {s.end_reason for s in sessions}  # the killed worker's session
    assert data["workers"] == len(sessions)
    sqs = boto3.client("sqs", region_name=REGION)
    assert not sqs.list_queues().get("QueueUrls")  # the job's queues are gone

    stored = _objects()
    again = _infer(sqlite_db, _config(tmp_path), pages, model, out, instances=3)
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "nothing-to-do"
    assert _objects() == stored and not sqs.list_queues().get("QueueUrls")  # nothing sent again


def test_a_poisoned_page_ends_in_the_dead_letter_report(moto_server: str, pages: Path, model: Path,
                                                       tmp_path: Path, sqlite_db: str) -> None:
    bad = sorted((pages / "lines").glob("*.png"))[5]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n corrupt")
    out = tmp_path / "out"
    result = _infer(sqlite_db, _config(tmp_path), pages, model, out, instances=2)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    key = bad.relative_to(pages).as_posix()
    assert data["status"] == "partial" and data["done"] == len(_keys(pages)) - 1
    assert [d["page"] for d in data["dead"]] == [key]
    reason = data["dead"][0]["reason"]  # read as a page scan would be: named, with its fix
    assert reason.split(":")[0] in ("not-an-image", "corrupt-image") and bad.name in reason
    assert json.loads((out / "dead-letter.json").read_text())["pages"][0]["page"] == key
    assert not (out / key).with_suffix(".txt").exists()
