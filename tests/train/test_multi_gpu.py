"""`--gpus N` on this machine and in the trainer: the local provider's two gloo processes
through the real CLI, the checks that refuse what cannot run, SIGTERM under torchrun (every rank
stops, one checkpoint), and a resume on another number of processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launcher.errors import InputError
from launcher.train.gpus import check_gpus, local_device, torchrun_args
from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli

ROOT = Path(__file__).parents[2]


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_gpu_counts_and_local_devices() -> None:
    assert [check_gpus(n) for n in (1, 2, 4, 8)] == [1, 2, 4, 8]
    for bad in (0, 3, 16, -1):
        with pytest.raises(InputError, match="use --gpus 1, 2, 4 or 8"):
            check_gpus(bad)
    assert local_device(1, "rtx3060", 1) == "auto"  # one process: the trainer's own choice
    assert local_device(2, "cpu", 0) == "cpu"  # no GPU here: two gloo processes
    assert local_device(2, "cpu", 4) == "cpu"  # the user asked for the CPU
    assert local_device(2, "rtx3060", 0) == "cpu"
    assert local_device(4, "rtx3060", 4) == "cuda"
    with pytest.raises(InputError) as caught:
        local_device(4, "rtx3060", 2)
    assert caught.value.message == "--gpus 4: this machine has 2 CUDA GPU(s)"
    assert caught.value.fix == "pass --gpus 2 or fewer, or --gpu cpu for CPU processes"


def test_ssh_provider_refuses_more_than_one_gpu(cli, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[hosts.box]\nhost = "127.0.0.1"\nuser = "me"\nkey_path = "/nonexistent"\n'
                   'host_key = "ssh-ed25519 AAAA"\n')
    cli.config = cfg
    gt = tmp_path / "gt"
    gt.mkdir()
    result = cli("train", str(gt), "--provider", "ssh", "--gpus", "2", "--dry-run")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == ("error: --gpus 2 is not supported with --provider ssh; "
                                     "use --provider aws or local, or --gpus 1")


@pytest.mark.slow
def test_local_two_processes_end_to_end(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    """`gpuhire train --provider local --gpus 2` on a CPU-only machine: two gloo processes."""
    run = tmp_path / "runs" / "job2"
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--gpus", "2", "--preset",
                       "tiny", "--epochs", "1", "--yes", "--out", str(run))
    assert r.exit_code == 0, (r.stderr, (run / "train.log").read_text()[-2000:])
    assert "torchrun, 2 CPU processes (gloo)" in r.stderr
    assert "2x cpu" in r.stderr  # the quote: two processes, one CPU's share each
    events = _events(run / "events.jsonl")
    (start,) = [e for e in events if e["event"] == "start"]
    assert start["world_size"] == 2 and start["device"] == "cpu"
    assert len([e for e in events if e["event"] == "checkpoint"]) == 1  # rank 0 only
    assert events[-1]["event"] == "done" and (run / "model.pt").exists()
    book = Ledger(open_engine(sqlite_db))
    (view,) = book.sessions()
    assert view.session.gpu_count == 1  # one CPU, however many processes share it
    job = book.get_job(view.session.job_id)
    assert job.spec["gpus"] == 2 and job.status == "done"
    state = json.loads((run / "state.json").read_text())
    assert state["machine"]["gpus"] == 2  # `gpuhire resume` runs two again (or --gpus M)


@pytest.mark.slow
def test_sigterm_under_torchrun_one_checkpoint_then_resume_on_one_process(
        tiny_gt: Path, tmp_path: Path) -> None:
    """SIGTERM to torchrun (what the spot watcher sends the job's pid) reaches both ranks: they
    stop at the same step, rank 0 writes one checkpoint; the run resumes as ONE process from
    it (a checkpoint is not tied to the world size)."""
    from jobs.htr.dataset import compile_dataset

    ds, run, ev = tmp_path / "ds", tmp_path / "run", tmp_path / "events.jsonl"
    compile_dataset([tiny_gt], ds, height=32, workers=1)
    common = ["train", str(ds), "--out", str(run), "--preset", "tiny", "--events", str(ev),
              "--device", "cpu", "--job", "sig"]
    proc = subprocess.Popen([sys.executable, *torchrun_args(2), *common, "--epochs", "200"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not [e for e in _events(ev) if e["event"] == "epoch"]:
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:] if proc.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.3)  # into the second epoch: a mid-epoch position to carry over
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    events = _events(ev)
    signal_saves = [e for e in events if e["event"] == "checkpoint" and e["reason"] == "signal"]
    assert len(signal_saves) == 1, out[-2000:]  # once, by rank 0
    (stopped,) = [e for e in events if e["event"] == "interrupted"]
    assert stopped["step"] == signal_saves[0]["step"]
    assert "done" not in {e["event"] for e in events}
    import torch

    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["world"] == 2
    epoch = saved["state"]["epoch"]

    done = subprocess.run([sys.executable, "-m", "jobs.htr", *common, "--epochs", str(epoch)],
                          cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = _events(ev)[len(events):]
    assert after[0]["event"] == "start" and after[0]["world_size"] == 1
    assert after[0]["resumed_from_step"] == stopped["step"]
    assert after[-1]["event"] == "done"
    assert [e["epoch"] for e in after if e["event"] == "epoch"] == [epoch]


def test_resume_position_is_rescaled_for_another_world_size() -> None:
    from jobs.htr.ddp import rescale_position

    assert rescale_position(5, 2, 2) == 5
    assert rescale_position(5, 2, 1) == 10  # one process: ten batches of the epoch done
    assert rescale_position(5, 2, 4) == 2  # four: the last whole round (8 of 10), none skipped
    assert rescale_position(3, 4, 8) == 1
    assert rescale_position(7, 1, 2) == 3
