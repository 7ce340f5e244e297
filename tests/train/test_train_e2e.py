"""`gpuhire train` end to end with the real trainer: local and ssh providers, real sshd.

Each run trains the `tiny` preset for 2 epochs on 80 synthetic lines (about half a minute on
two CPU cores), through the real CLI, and checks the ledger, the run directory and the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sshd import Sshd

from launcher.commands.train_cmds import span
from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli
from tests.train.conftest import ssh_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def _epochs(run: Path) -> list[int]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line]
    return [e["epoch"] for e in events if e["event"] == "epoch"]


def _wait_for(predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_local_train_end_to_end(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny",
                       "--epochs", "2", "--yes", "--out", str(run))
    assert r.exit_code == 0, r.stderr
    assert "job " in r.stdout and ": done" in r.stdout
    assert (run / "model.pt").stat().st_size > 10_000
    assert _epochs(run) == [1, 2]
    log = (run / "train.log").read_text()  # `gpuhire logs JOB`: readable, not empty
    assert " start: device cpu" in log and " epoch: epoch 2" in log and " done: " in log
    book = Ledger(open_engine(sqlite_db))
    (view,) = book.sessions()
    s = view.session
    assert (s.provider, s.owned, s.state, s.end_reason) == ("local", True, "ended", "completed")
    assert view.cost.total_usd > 0
    job = book.get_job(s.job_id)
    assert job.status == "done" and job.best_cer is not None and job.lines_per_s > 0
    # the first quote came from a calibration on this CPU; the job keeps it beside its actuals
    assert "(tiny on cpu, calibrated: " in r.stderr and (job.model_size, job.device) == ("tiny", "cpu")
    assert job.quoted_s > 0 and job.quoted_usd > 0
    assert abs(job.actual_usd - view.cost.total_usd) < Decimal("1e-9")  # stored in nano-USD
    assert job.actual_s == pytest.approx(float(view.cost.duration_s))
    error = job.actual_s / job.quoted_s - 1
    assert f"  quote         quoted {span(job.quoted_s)} / " in r.stdout
    assert f" ({error:+.0%})".replace("%", " %") in r.stdout
    # the next quote of this size on this CPU is the measured one: no calibration
    again = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny",
                           "--epochs", "2", "--dry-run", "--format", "json", "--out", str(tmp_path / "b"))
    assert again.exit_code == 0, again.stderr
    assert "calibrating" not in again.stderr
    q = json.loads(again.stdout)["quote"]
    assert q["throughput_source"] == "measured, median of 1 job(s)"
    assert q["lines_per_s"] == pytest.approx(job.lines_per_s, rel=1e-3)


def test_dry_run_rents_nothing_and_bad_gt_is_refused(tmp_path: Path, sqlite_db: str) -> None:
    cli = Cli(sqlite_db)
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("train", str(empty), "--provider", "local", "--yes", "--out", str(tmp_path / "r1"))
    assert r.exit_code == 1 and r.stderr.startswith("error: ground truth unusable")
    assert "nothing was rented" in r.stderr
    r = cli("train", str(tmp_path / "missing"), "--provider", "local", "--yes")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    book = Ledger(open_engine(sqlite_db))
    assert book.sessions() == [] and book.jobs() == []


def test_quote_above_max_usd_rents_nothing(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--yes",
                       "--max-usd", "0.000001", "--out", str(tmp_path / "r"))
    assert r.exit_code == 1
    assert "above --max-usd 0.000001; nothing was rented" in r.stderr
    assert Ledger(open_engine(sqlite_db)).sessions() == []


def test_ssh_provider_survives_a_dropped_connection(tiny_gt: Path, tmp_path: Path, box: Sshd,
                                                    sqlite_db: str) -> None:
    cfg = ssh_config(tmp_path / "config.toml", box, tmp_path / "remote")
    run = tmp_path / "runs" / "job"
    result: dict[str, object] = {}

    def launch() -> None:
        result["r"] = Cli(sqlite_db, cfg)("train", str(tiny_gt), "--provider", "ssh", "--host",
                                          "box", "--preset", "tiny", "--epochs", "3", "--yes",
                                          "--out", str(run))

    thread = threading.Thread(target=launch)
    thread.start()
    _wait_for(lambda: (run / "events.jsonl").exists() and _epochs(run))
    assert box.drop_sessions() > 0  # the network drops: every SSH connection is gone
    thread.join(600)
    r = result["r"]
    assert r.exit_code == 0, r.stderr  # type: ignore[attr-defined]
    assert _epochs(run) == [1, 2, 3]  # nothing lost, nothing twice
    assert (run / "model.pt").exists()
    (view,) = Ledger(open_engine(sqlite_db)).sessions()
    assert (view.session.provider, view.session.gpu_model, view.session.state) == ("ssh", "rtx3060", "ended")


def test_wrong_host_key_is_refused_and_nothing_runs(tiny_gt: Path, tmp_path: Path, box: Sshd,
                                                    sqlite_db: str) -> None:
    cfg = ssh_config(tmp_path / "config.toml", box, tmp_path / "remote")
    other = Sshd(tmp_path / "other")  # a different host key for the same address
    cfg.write_text(cfg.read_text().replace(box.host_public_key, other.host_public_key))
    r = Cli(sqlite_db, cfg)("train", str(tiny_gt), "--provider", "ssh", "--host", "box",
                            "--preset", "tiny", "--yes", "--out", str(tmp_path / "r"))
    assert r.exit_code == 1
    assert "does not match the pinned key" in r.stderr
    assert not (tmp_path / "remote").exists()
    assert Ledger(open_engine(sqlite_db)).sessions() == []


def test_launcher_killed_then_resume_finishes(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    env = {**os.environ, "GPUHIRE_DB": sqlite_db, "PYTHONPATH": str(ROOT)}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher", "train", str(tiny_gt), "--provider", "local",
         "--preset", "tiny", "--epochs", "3", "--yes", "--out", str(run)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _wait_for(lambda: (run / "events.jsonl").exists() and _epochs(run))
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(30)
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "running"
    r = subprocess.run([sys.executable, "-m", "launcher", "resume", state["job"], "--runs",
                        str(run.parent)], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert ": done" in r.stdout
    assert _epochs(run)[-1] == 3
    assert (run / "model.pt").exists()
    book = Ledger(open_engine(sqlite_db))
    assert all(v.session.end_at is not None for v in book.sessions())
    assert book.get_job(state["job"]).status == "done"


def test_detach_then_attach_follows_to_the_end(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    cli = Cli(sqlite_db)
    run = tmp_path / "runs" / "job"
    r = cli("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "2",
            "--yes", "--detach", "--out", str(run))
    assert r.exit_code == 0, r.stderr
    assert ": detached" in r.stdout and "gpuhire attach" in r.stderr
    job = json.loads((run / "state.json").read_text())["job"]
    (view,) = Ledger(open_engine(sqlite_db)).sessions()
    assert view.running  # the job runs on without a launcher
    r = cli("attach", job)  # found through the ledger, from any folder
    assert r.exit_code == 0, r.stderr
    assert ": done" in r.stdout
    assert _epochs(run) == [1, 2] and (run / "model.pt").exists()
    (view,) = Ledger(open_engine(sqlite_db)).sessions()
    assert not view.running and view.session.end_reason == "completed"


def test_dry_run_prints_the_quote_and_rents_nothing(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny",
                       "--epochs", "5", "--dry-run", "--out", str(tmp_path / "r"))
    assert r.exit_code == 0, r.stderr
    assert "calibrating: a few training steps on this CPU" in r.stderr
    assert "quote: 80 lines x 5 epochs at " in r.stderr and "(tiny on cpu, calibrated: " in r.stderr
    assert "at 2 lines/s" not in r.stderr  # the old constant default
    assert "dry run: nothing rented" in r.stderr
    book = Ledger(open_engine(sqlite_db))
    assert book.sessions() == [] and book.jobs() == []


def test_no_aws_credentials_is_one_line_and_nothing_rented(tiny_gt: Path, tmp_path: Path,
                                                          sqlite_db: str) -> None:
    env = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "aws", "--gpu", "t4", "--yes",
                       "--out", str(tmp_path / "r"), env=env)
    assert r.exit_code == 1
    last = r.stderr.splitlines()[-1]  # after the ground-truth check's summary
    assert last.startswith("error: no AWS credentials found") and "aws configure" in last
    assert "Traceback" not in r.stderr
    assert Ledger(open_engine(sqlite_db)).sessions() == []
