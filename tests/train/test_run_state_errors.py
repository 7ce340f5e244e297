"""A damaged state.json and an empty trainer log: `resume`, `attach` and `logs` say what is
wrong and where, instead of "no run directory" or nothing at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.rundir import RunDir, RunState
from tests.conftest import Cli

JOB = "train-20261101-0900-beef"


@pytest.mark.parametrize("command", ["resume", "attach", "logs"])
@pytest.mark.parametrize("text", ["{broken", "[1, 2]", '{"provider": "local"}'],
                         ids=["not-json", "not-an-object", "no-job"])
def test_a_damaged_state_file_is_named(sqlite_db: str, tmp_path: Path, command: str, text: str) -> None:
    runs = tmp_path / "runs"
    (runs / JOB).mkdir(parents=True)
    state = runs / JOB / "state.json"
    state.write_text(text)
    r = Cli(sqlite_db)(command, JOB, "--runs", str(runs))
    assert r.exit_code != 0 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: the state file {state} is unreadable (")
    assert line.endswith(f"repair it (JSON, see docs/train.md), or end the job with `gpuhire stop {JOB}`")
    assert state.read_text() == text


def test_another_job_beside_a_damaged_state_file(sqlite_db: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "somewhere").mkdir(parents=True)
    (runs / "somewhere" / "state.json").write_text("{broken")
    r = Cli(sqlite_db)("logs", JOB, "--runs", str(runs))
    assert r.exit_code == 1
    assert r.stderr == (f"error: no run directory for job '{JOB}' under {runs} (unreadable, it may be "
                        f"one of: {runs / 'somewhere' / 'state.json'}); repair that state file "
                        "(JSON, see docs/train.md)\n")


def _finished(run: Path, events: list[dict[str, str]]) -> None:
    run.mkdir(parents=True)
    RunDir(run).save(RunState(job=JOB, provider="local", gpu="cpu", data=["gt"], preset="tiny",
                              epochs=2, max_restarts=0, status="done"))
    (run / "train.log").write_bytes(b"")
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


@pytest.mark.parametrize("follow", [[], ["-f"]], ids=["plain", "follow"])
def test_logs_of_a_finished_job_with_an_empty_log_point_to_its_events(
        sqlite_db: str, tmp_path: Path, follow: list[str]) -> None:
    run = tmp_path / "runs" / JOB
    _finished(run, [{"event": "start", "time": "2026-11-01T09:00:00Z", "job": JOB},
                    {"event": "done", "time": "2026-11-01T09:04:00Z", "job": JOB}])
    r = Cli(sqlite_db)("logs", JOB, "--runs", str(run.parent), *follow)
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == (f"note: {run / 'train.log'} is empty; the job's 2 event(s) are in "
                        f"{run / 'events.jsonl'} (the last: done at 2026-11-01T09:04:00Z)\n")


def test_logs_with_no_events_either(sqlite_db: str, tmp_path: Path) -> None:
    run = tmp_path / "runs" / JOB
    _finished(run, [])
    r = Cli(sqlite_db)("logs", JOB, "--runs", str(run.parent))
    assert r.exit_code == 0
    assert r.stderr == (f"note: {run / 'train.log'} is empty and the job has sent no events yet "
                        f"({run / 'events.jsonl'})\n")
