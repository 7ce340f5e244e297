"""Control of a running job with the local provider and the real trainer (tiny preset, 80
lines): Ctrl-C then detach or stop, `gpuhire logs [-f]`, the running --max-usd stop and its
resume with a higher cap, and running out of --max-restarts."""

from __future__ import annotations

import _thread
import json
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from jobs.htr.config import PRESETS_DIR
from launcher.config import Settings
from launcher.errors import BudgetError
from launcher.providers.local import LocalHost, LocalProvider
from launcher.status import stop_owned_job
from launcher.train.flow import train
from launcher.train.ground_truth import compile_ground_truth
from launcher.train.types import TrainDeps, TrainOptions
from ledger.book import Ledger
from ledger.catalogue import BUILTIN_PROVIDERS
from ledger.db import open_engine
from tests.conftest import Cli

pytestmark = pytest.mark.slow


def _wait(predicate, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _events(run: Path) -> list[str]:
    path = run / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x)["event"] for x in lines if x.strip().endswith("}")]


def _has(run: Path, event: str) -> bool:
    return event in _events(run)


def _starts(run: Path) -> int:
    return _events(run).count("start")


def _setup(tmp_path: Path, sqlite_db: str, *, watts: str = "65", answer: bool = True,
           lines_per_s: float | None = None) -> tuple[Ledger, TrainDeps, Path, list[str]]:
    book = Ledger(open_engine(sqlite_db))
    run = tmp_path / "runs" / "job"
    renter = LocalProvider(book, run, "cpu", Decimal(watts), Decimal("0.30"), BUILTIN_PROVIDERS["local"])
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: answer,
                     compile_dataset=compile_ground_truth,
                     default_lines_per_s={"cpu": lines_per_s} if lines_per_s else None)
    return book, deps, run, said


def _ctrl_c_after_first_epoch(run: Path) -> threading.Thread:
    def press() -> None:
        _wait(lambda: _has(run, "epoch"))
        _thread.interrupt_main()  # what Ctrl-C does: KeyboardInterrupt in the launcher

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_then_detach_leaves_the_job_running(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    book, deps, run, said = _setup(tmp_path, sqlite_db, answer=True)  # "Detach?" yes
    thread = _ctrl_c_after_first_epoch(run)
    result = train(TrainOptions(data=(tiny_gt,), preset="tiny", epochs=40, yes=True, out=run, job="job"), deps)
    thread.join(5)
    assert result.status == "detached" and any("gpuhire attach job" in s for s in said)
    pid = int((run / "box" / "train.pid").read_text())
    try:
        assert _pid_alive(pid)  # the job runs on, its session open
        (view,) = book.sessions()
        assert view.running
    finally:
        stop_owned_job(book, Settings(), "job", tmp_path / "runs")
        _wait(lambda: not _pid_alive(pid), 60)


def test_ctrl_c_then_stop_ends_the_job_and_its_session(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    book, deps, run, _ = _setup(tmp_path, sqlite_db, answer=False)  # "Detach?" no: stop it
    thread = _ctrl_c_after_first_epoch(run)
    result = train(TrainOptions(data=(tiny_gt,), preset="tiny", epochs=40, yes=True, out=run, job="job"), deps)
    thread.join(5)
    assert result.status == "stopped"
    pid = int((run / "box" / "train.pid").read_text())
    _wait(lambda: not _pid_alive(pid), 60)
    (view,) = book.sessions()
    assert not view.running and view.session.end_reason == "user"
    assert book.get_job("job").status == "stopped"
    assert (run / "run" / "checkpoint.pt").exists()  # SIGTERM: the trainer checkpointed


def test_logs_prints_the_log_and_follow_ends_with_the_job(tiny_gt: Path, tmp_path: Path,
                                                          sqlite_db: str) -> None:
    cli = Cli(sqlite_db)
    run = tmp_path / "runs" / "job"
    r = cli("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--epochs", "1",
            "--yes", "--detach", "--out", str(run))
    assert r.exit_code == 0, r.stderr
    job = json.loads((run / "state.json").read_text())["job"]
    log = run / "box" / "train-0.log"
    with log.open("a") as fh:  # the trainer says little on success: give the log a known line
        fh.write("a line the log holds\n")
    r = cli("logs", job)
    assert r.exit_code == 0 and "a line the log holds" in r.stdout
    out: dict[str, object] = {}
    follower = threading.Thread(target=lambda: out.setdefault("r", cli("logs", job, "-f")), daemon=True)
    follower.start()
    follower.join(120)  # returns by itself once the job's process has ended
    assert not follower.is_alive(), "logs -f did not end with the job"
    pid = int((run / "box" / "train.pid").read_text())
    assert not LocalHost(run / "box").running("train.pid") and not _pid_alive(pid)
    assert out["r"].exit_code == 0 and out["r"].stdout == log.read_text()  # type: ignore[attr-defined]
    r = cli("logs", "no-such-job", "--runs", str(tmp_path / "runs"))
    assert r.exit_code == 1 and "no run directory" in r.stderr


def test_running_past_max_usd_stops_and_resume_with_a_higher_cap_goes_on(
        tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    # 36 USD/h (an absurd 120 kW: a cent a second) and a quote of about 10 s of overhead
    # ($0.10) under a $0.16 cap: the cap is passed while the job runs, not at the quote.
    book, deps, run, _ = _setup(tmp_path, sqlite_db, watts="120000", lines_per_s=1e6)
    checked: list[str] = []
    deps.after_job = checked.append  # the alert checks run for a job stopped at its cap too
    with pytest.raises(BudgetError) as err:
        train(TrainOptions(data=(tiny_gt,), preset="tiny", epochs=40, yes=True, out=run, job="job",
                           max_usd=Decimal("0.16")), deps)
    assert checked == ["job"]
    assert "above --max-usd 0.16; it was stopped and the machine released" in err.value.message
    assert "gpuhire resume job --max-usd X" in (err.value.fix or "")
    pid = int((run / "box" / "train.pid").read_text())
    _wait(lambda: not _pid_alive(pid), 60)
    (view,) = book.sessions()
    assert not view.running and view.cost.total_usd > Decimal("0.16")
    assert book.get_job("job").status == "stopped"
    assert json.loads((run / "state.json").read_text())["status"] == "over-budget"

    cli = Cli(sqlite_db)
    r = cli("resume", "job", "--runs", str(tmp_path / "runs"))  # same cap: refused, nothing rented
    assert r.exit_code == 1 and "above --max-usd 0.16" in r.stderr
    assert len(book.sessions()) == 1
    state = json.loads((run / "state.json").read_text())
    state["epochs"] = state["epochs"] and 2  # finish soon: 2 epochs in all
    (run / "state.json").write_text(json.dumps(state))
    r = cli("resume", "job", "--runs", str(tmp_path / "runs"), "--max-usd", "100")
    assert r.exit_code == 0, r.stderr
    assert "job job: done" in r.stdout
    assert book.get_job("job").status == "done" and len(book.sessions()) == 2


def test_out_of_max_restarts_fails_with_the_way_on(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    book, deps, run, _ = _setup(tmp_path, sqlite_db)
    terms: list[int] = []

    def take_it_back() -> None:  # SIGTERM, as the box's spot watcher sends it, on each attempt
        pid_file = run / "box" / "train.pid"
        for attempt in (0, 1):
            _wait(lambda a=attempt: _starts(run) > a and pid_file.exists())
            time.sleep(0.5)
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            terms.append(pid)
            _wait(lambda p=pid: not _pid_alive(p), 60)

    thread = threading.Thread(target=take_it_back, daemon=True)
    thread.start()
    result = train(TrainOptions(data=(tiny_gt,), preset="tiny", epochs=40, yes=True, out=run, job="job",
                                max_restarts=1), deps)
    thread.join(10)
    assert len(terms) == 2 and terms[0] != terms[1]  # one relaunch, then no more
    assert result.status == "failed" and result.attempts == 2
    assert "interrupted 2 time(s), more than --max-restarts 1 allows" in result.message
    assert "`gpuhire resume job` continues from the last checkpoint" in result.message
    assert len(book.sessions()) == 2 and not any(v.running for v in book.sessions())
    assert book.get_job("job").status == "failed"
    assert json.loads((run / "state.json").read_text())["status"] == "interrupted"  # resumable


def test_dry_run_prints_no_model_and_a_preset_files_epochs_beat_the_config(
        tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[train]\nepochs = 7\n")
    mine = tmp_path / "mine.toml"
    mine.write_text((PRESETS_DIR / "tiny.toml").read_text().replace("epochs = 8", "epochs = 3"))
    cli = Cli(sqlite_db, config)
    base = ("train", str(tiny_gt), "--provider", "local", "--dry-run", "--out", str(tmp_path / "r"))
    r = cli(*base, "--preset", str(mine))
    assert r.exit_code == 0, r.stderr
    assert "quote: 80 lines x 3 epochs at" in r.stderr  # the file's own, not [train] epochs = 7
    assert "M params on cpu, calibrated: " in r.stderr  # a file's size is its parameter count
    assert r.stdout.splitlines()[0].endswith(": dry-run") and "model" not in r.stdout
    r = cli(*base, "--preset", str(mine), "--epochs", "5")  # --epochs beats both
    assert r.exit_code == 0 and "quote: 80 lines x 5 epochs at" in r.stderr
    r = cli(*base, "--preset", "tiny")  # a shipped preset: the config's default, as before
    assert r.exit_code == 0 and "quote: 80 lines x 7 epochs at" in r.stderr


def test_local_gpu_this_machine_lacks_is_one_line(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    from jobs.htr.hardware import pick_device

    if pick_device("auto").type == "cuda":
        pytest.skip("this machine has a CUDA device: any --gpu may be what it has")
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--gpu", "h100", "--dry-run",
                       "--out", str(tmp_path / "r"))
    assert r.exit_code == 2
    assert r.stderr.strip() == ("error: --gpu h100: the local provider runs on what this machine has "
                                "(cpu here); pass --gpu cpu or auto")
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--gpu", "cpu", "--dry-run",
                       "--preset", "tiny", "--out", str(tmp_path / "r"))
    assert r.exit_code == 0 and "plan: this machine (cpu)" in r.stderr

