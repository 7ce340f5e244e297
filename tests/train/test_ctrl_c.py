"""Ctrl-C in a real launcher process (a real SIGINT), local provider, real trainer (tiny preset,
80 lines): without a terminal it stops the job; with one, the first asks detach-or-stop and a
second stops. A stopped job is `stopped`, its checkpoint home, exit 130, and `resume` goes on
from that checkpoint."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate: Callable[[], object], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _events(run: Path, kind: str) -> list[dict[str, object]]:
    path = run / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for x in lines if x.strip().endswith("}") and (e := json.loads(x))["event"] == kind]


class _Launcher:
    """`python -m launcher ARGS` with its stdout and stderr read as they come."""

    def __init__(self, args: list[str], db: str, cwd: Path, stdin: int | None = subprocess.DEVNULL) -> None:
        env = {**os.environ, "GPUHIRE_DB": db, "PYTHONPATH": str(ROOT)}
        config = ["--config", str(_config(cwd))]
        self.proc = subprocess.Popen([sys.executable, "-m", "launcher", *config, *args], env=env, cwd=cwd,
                                     stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True)
                        for name in self.out]
        for t in self.readers:
            t.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        while chunk := os.read(stream.fileno(), 4096):
            self.out[name] += chunk

    def text(self, name: str) -> str:
        return self.out[name].decode(errors="replace")

    def finish(self, timeout_s: float = 120.0) -> int:
        code = self.proc.wait(timeout_s)
        for t in self.readers:
            t.join(10)
        return code


def _config(folder: Path) -> Path:
    """A config where this machine costs enough (36 kW at $0.30/kWh, $10.80/h) that seconds of
    it show in the summary's USD."""
    path = folder / "config.toml"
    path.write_text('[local]\nwatts = "36000"\n')
    return path


def _train(tiny_gt: Path, run: Path, db: str, stdin: int | None = subprocess.DEVNULL) -> _Launcher:
    return _Launcher(["train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "40",
                      "--yes", "--out", str(run)], db, run.parent.parent, stdin)


def _stopped_summary(stdout: str, job: str) -> None:
    lines = stdout.splitlines()
    assert lines[0] == f"job {job}: stopped (`gpuhire resume {job}` continues it from its last checkpoint)"
    assert lines[1].endswith("over 1 attempt(s)") and "$0.0000" not in lines[2]
    assert not any(x.lstrip().startswith("model") for x in lines)  # no model.pt to point at


def _job_stopped(book: Ledger, run: Path, job: str) -> None:
    assert book.get_job(job).status == "stopped"
    assert json.loads((run / "state.json").read_text())["status"] == "stopped"
    assert not any(v.running for v in book.sessions())
    assert (run / "run" / "checkpoint.pt").exists()  # the stop checkpoint came home
    assert _events(run, "interrupted")  # the trainer got SIGTERM and said so


def test_sigint_without_a_terminal_stops_and_resume_goes_on(tiny_gt: Path, tmp_path: Path,
                                                             sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    launcher = _train(tiny_gt, run, sqlite_db)  # stdin: not a terminal, --yes given
    _wait(lambda: _events(run, "epoch"))
    launcher.proc.send_signal(signal.SIGINT)
    assert launcher.finish() == 130, launcher.text("stderr")
    job = json.loads((run / "state.json").read_text())["job"]
    err = launcher.text("stderr")
    assert "interrupted: no terminal to ask detach-or-stop on, so the job stops" in err
    assert "needs an answer" not in err and "error:" not in err
    _stopped_summary(launcher.text("stdout"), job)
    book = Ledger(open_engine(sqlite_db))
    _job_stopped(book, run, job)
    assert (run / "train.log").read_bytes() == (run / "box" / "train-0.log").read_bytes()

    # `train --out` into its folder points to `resume`, and `resume` goes on from the checkpoint.
    cli = Cli(sqlite_db, _config(tmp_path))
    r = cli("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--yes", "--out", str(run))
    assert r.exit_code == 2 and f"`gpuhire resume {job}` to continue that job" in r.stderr
    state = json.loads((run / "state.json").read_text())
    state["epochs"] = len(_events(run, "epoch")) + 1  # one more epoch: finish soon
    (run / "state.json").write_text(json.dumps(state))
    r = cli("resume", job, "--runs", str(run.parent))
    assert r.exit_code == 0, r.stderr
    assert f"job {job}: done" in r.stdout and "over 2 attempt(s)" in r.stdout
    assert f"  model         {run / 'model.pt'}" in r.stdout and (run / "model.pt").exists()
    (resumed,) = _events(run, "start")[1:]
    assert resumed["resumed_from_step"]  # from the stop checkpoint, not from scratch
    assert book.get_job(job).status == "done" and book.get_job(job).ended_at is not None
    assert len(book.sessions()) == 2


def test_ctrl_c_twice_at_the_question_stops_the_job(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    master, terminal = pty.openpty()  # stdin is a terminal: the first Ctrl-C asks
    try:
        launcher = _train(tiny_gt, run, sqlite_db, stdin=terminal)
        _wait(lambda: _events(run, "epoch"))
        launcher.proc.send_signal(signal.SIGINT)
        _wait(lambda: "Detach and leave the job running? (no = stop it now) [y/N]:" in launcher.text("stdout"))
        launcher.proc.send_signal(signal.SIGINT)  # the second Ctrl-C, at the question: stop
        assert launcher.finish() == 130, launcher.text("stderr")
    finally:
        os.close(master)
        os.close(terminal)
    job = json.loads((run / "state.json").read_text())["job"]
    out, err = launcher.text("stdout"), launcher.text("stderr")
    assert "Aborted!" not in out + err and "error:" not in err
    assert f"stopping job {job}: the trainer writes a checkpoint, and it comes home" in err
    _stopped_summary(out.split("[y/N]: \n", 1)[1], job)
    _job_stopped(Ledger(open_engine(sqlite_db)), run, job)


def test_detach_then_sigint_in_attach_stops_and_gpuhire_stop_resumes(
        tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    cli = Cli(sqlite_db, _config(tmp_path))
    r = cli("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "40",
            "--yes", "--detach", "--out", str(run))
    assert r.exit_code == 0, r.stderr
    job = json.loads((run / "state.json").read_text())["job"]
    lines = r.stdout.splitlines()
    assert lines[0] == f"job {job}: detached" and lines[1].endswith("over 1 attempt(s)")
    assert not any(x.lstrip().startswith("model") for x in lines)
    attach = _Launcher(["attach", job], sqlite_db, tmp_path)
    _wait(lambda: f"reattached to job {job}" in attach.text("stderr") and _events(run, "epoch"))
    attach.proc.send_signal(signal.SIGINT)
    assert attach.finish() == 130, attach.text("stderr")
    _stopped_summary(attach.text("stdout"), job)
    book = Ledger(open_engine(sqlite_db))
    _job_stopped(book, run, job)

    r = cli("attach", job)  # nothing runs: the way on is resume
    assert r.exit_code == 1
    assert r.stderr.strip() == (f"error: job {job} is not running any more; "
                                f"`gpuhire resume {job}` continues it from its last checkpoint")
    # A job stopped by `gpuhire stop` (while running, here from a resumed attempt) goes on too.
    resume = _Launcher(["resume", job], sqlite_db, tmp_path)
    _wait(lambda: len(_events(run, "start")) == 2 and (run / "box" / "train.pid").exists())
    r = cli("stop", job)
    assert r.exit_code == 0, r.stderr
    assert resume.finish() == 0, resume.text("stderr")
    assert f"job {job}: stopped" in resume.text("stdout")
    assert book.get_job(job).status == "stopped"
    state = json.loads((run / "state.json").read_text())
    state["epochs"] = max(int(e["epoch"]) for e in _events(run, "epoch")) + 1  # type: ignore[call-overload]
    (run / "state.json").write_text(json.dumps(state))
    r = cli("resume", job)
    assert r.exit_code == 0, r.stderr
    assert f"job {job}: done" in r.stdout and book.get_job(job).status == "done"
