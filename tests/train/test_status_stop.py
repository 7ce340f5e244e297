"""`gpuhire status` and `gpuhire stop` for local jobs, without any AWS (the real trainer, detached)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli

pytestmark = pytest.mark.slow

NO_AWS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
          "AWS_PROFILE": None, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
          "AWS_EC2_METADATA_DISABLED": "true"}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_status_and_stop_of_a_local_job_need_no_aws(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    cli = Cli(sqlite_db)
    r = cli("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "50",
            "--yes", "--detach", "--out", str(run), env=NO_AWS)
    assert r.exit_code == 0, r.stderr
    job = json.loads((run / "state.json").read_text())["job"]
    pid = int((run / "box" / "train.pid").read_text())

    r = cli("status", "--format", "json", env=NO_AWS)
    assert r.exit_code == 0 and r.stderr == ""  # no [aws], no credentials: AWS is not asked
    (row,) = json.loads(r.stdout)
    assert (row["job"], row["provider"], row["market"], row["state"]) == (job, "local", "owned", "running")
    assert float(row["usd_so_far"]) > 0 and row["instance_id"] is None

    # [aws] configured but no credentials: one line says so, the local job is still listed
    config = tmp_path / "config.toml"
    config.write_text('[aws]\nbucket = "gpuhire-test"\n')
    r = Cli(sqlite_db, config)("status", env={**NO_AWS, "COLUMNS": "200"})
    assert r.exit_code == 0
    assert r.stderr.strip() == ("note: AWS not asked: no AWS credentials found (aws configure, "
                                "or aws sso login)")
    assert job in r.stdout and "local" in r.stdout

    r = cli("stop", job, env=NO_AWS)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == f"{job}: process signalled, 1 session(s) closed"
    deadline = time.monotonic() + 60
    while _alive(pid):  # SIGTERM: the trainer checkpoints and exits
        assert time.monotonic() < deadline
        time.sleep(0.2)
    book = Ledger(open_engine(sqlite_db))
    (view,) = book.sessions()
    assert view.session.end_reason == "user" and not view.running
    assert book.get_job(job).status == "stopped"
    assert json.loads((run / "state.json").read_text())["status"] == "stopped"
    assert cli("status", env=NO_AWS).stdout.strip() == "nothing running"
    assert cli("stop", "--all", "--yes", env=NO_AWS).stdout.strip() == "nothing to stop"


def test_stop_from_elsewhere_ends_a_followed_job_without_a_relaunch(tiny_gt: Path, tmp_path: Path,
                                                                    sqlite_db: str) -> None:
    import threading

    run = tmp_path / "runs" / "job"
    cli = Cli(sqlite_db)
    out: dict[str, object] = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", cli(
        "train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "50",
        "--max-restarts", "3", "--yes", "--out", str(run), env=NO_AWS)))
    thread.start()
    deadline = time.monotonic() + 120
    while not (run / "events.jsonl").exists() or b'"epoch"' not in (run / "events.jsonl").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job = json.loads((run / "state.json").read_text())["job"]
    assert cli("stop", job, env=NO_AWS).exit_code == 0
    thread.join(120)
    r = out["r"]
    assert r.exit_code == 0, r.stderr  # type: ignore[attr-defined]
    assert f"job {job}: stopped" in r.stdout  # type: ignore[attr-defined]
    book = Ledger(open_engine(sqlite_db))
    assert len(book.sessions()) == 1  # the trainer's SIGTERM exit was not taken for an interruption
    assert book.get_job(job).status == "stopped"
