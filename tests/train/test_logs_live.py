"""`gpuhire logs JOB [-f]` for a running ssh job: read live on the box over SSH (its host key
pinned), followed until the job's process ends; the real trainer on a real sshd."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sshd import Sshd, kill_pid_file

from tests.conftest import Cli
from tests.train.conftest import ssh_config
from tests.train.test_status_stop import NO_AWS

pytestmark = pytest.mark.slow


def _wait_for(predicate, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_logs_of_a_running_ssh_job_come_from_its_box(tiny_gt: Path, tmp_path: Path, box: Sshd,
                                                     sqlite_db: str) -> None:
    cli = Cli(sqlite_db, ssh_config(tmp_path / "config.toml", box, tmp_path / "remote"))
    run = tmp_path / "runs" / "job"
    r = cli("train", str(tiny_gt), "--provider", "ssh", "--host", "box", "--preset", "tiny",
            "--epochs", "200", "--yes", "--detach", "--out", str(run), env=NO_AWS)
    assert r.exit_code == 0, r.stderr
    job = json.loads((run / "state.json").read_text())["job"]
    box_log = tmp_path / "remote" / job / "train-0.log"  # on the "box" (sshd runs here)
    try:
        _wait_for(box_log.exists)
        with box_log.open("a") as fh:
            fh.write("a line only the box holds\n")

        r = cli("logs", job, env=NO_AWS)
        assert r.exit_code == 0, r.stderr
        assert "a line only the box holds" in r.stdout
        assert not (run / "train.log").exists()  # nothing was copied home: read on the box

        out: dict[str, object] = {}
        follower = threading.Thread(target=lambda: out.setdefault("r", cli("logs", job, "-f", env=NO_AWS)),
                                    daemon=True)
        follower.start()
        time.sleep(3)
        with box_log.open("a") as fh:
            fh.write("a line written while following\n")
        time.sleep(2)
        assert follower.is_alive(), "logs -f ended while the job runs"
        # The job's process ends as `gpuhire stop` ends it on the box: SIGTERM, it checkpoints.
        # Not `cli("stop")` here: CliRunner swaps sys.stdout for the whole process, so while
        # it ran it took what the follower thread printed (a CI run lost a chunk that way).
        os.kill(int((tmp_path / "remote" / job / "train.pid").read_text()), signal.SIGTERM)
        follower.join(120)  # ends by itself once the job's process has ended
        assert not follower.is_alive(), "logs -f did not end with the job"
        followed = out["r"]
        assert followed.exit_code == 0, followed.stderr  # type: ignore[attr-defined]
        assert followed.stdout == box_log.read_text()  # type: ignore[attr-defined]
        assert "a line written while following" in followed.stdout  # type: ignore[attr-defined]
    finally:
        kill_pid_file(tmp_path / "remote" / job / "train.pid")
