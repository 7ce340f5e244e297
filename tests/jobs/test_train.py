"""Training: it learns, it resumes after SIGTERM at the step it stopped, it fine-tunes, its CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_digit_pairs

from jobs.htr.checkpoint import load_checkpoint, load_model
from jobs.htr.config import load_config
from jobs.htr.dataset import CompiledDataset, compile_dataset
from jobs.htr.events import EventWriter, read_events
from jobs.htr.sampler import BucketBatchSampler
from jobs.htr.train import train

ROOT = Path(__file__).parents[2]


def _epochs(run: Path) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["event"] == "epoch"]


@pytest.mark.slow
def test_tiny_model_learns_the_digits(learned_run: Path) -> None:
    epochs = _epochs(learned_run)
    first, best = epochs[0]["val_cer"], min(e["val_cer"] for e in epochs)
    assert first > 0.5  # it starts knowing nothing ...
    assert best < 0.6 * first  # ... and validation CER drops clearly
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    metrics = json.loads((learned_run / "metrics.json").read_text())
    assert metrics["best_val_cer"] == best and metrics["epochs"] == len(epochs) == 8
    model, codec, cfg = load_model(learned_run / "model.pt")
    assert codec == list("0123456789") and model.height == 32 and cfg.lstm_layers == 1
    assert torch.load(learned_run / "model.pt", weights_only=True)["metrics"]["val_cer"] == best


def _wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"trainer exited early: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_restart_continues_at_that_step(digits_ds: Path, tmp_path: Path) -> None:
    preset = tmp_path / "p.toml"  # tiny, with a DataLoader worker (it must ignore the signal)
    text = (ROOT / "jobs/htr/presets/tiny.toml").read_text()
    for old, new in (("workers = 0", "workers = 1"), ("patience = 4", "patience = 100"),
                     ("progress_seconds = 1.0", "progress_seconds = 0.0")):  # a progress event every step
        assert old in text
        text = text.replace(old, new)
    preset.write_text(text)
    run, events = tmp_path / "run", tmp_path / "run" / "events.jsonl"
    argv = [sys.executable, "-m", "jobs.htr", "train", str(digits_ds), "--out", str(run), "--preset", str(preset),
            "--events", str(events), "--job", "resume-test"]
    proc = subprocess.Popen([*argv, "--epochs", "50"], stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(lambda: events.exists() and any(e["event"] == "progress" and e["epoch"] == 2 and e["step"] >= 3
                                                  for e in read_events(events)), 120, proc)
        os.killpg(proc.pid, signal.SIGTERM)  # as docker stop / torchrun pass on the spot notice
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    evs = read_events(events)
    interrupted = next(e for e in evs if e["event"] == "interrupted")
    stopped_at = interrupted["step"]
    assert interrupted["signal"] == "SIGTERM" and stopped_at >= 3
    assert any(e["event"] == "checkpoint" and e["reason"] == "signal" and e["step"] == stopped_at for e in evs)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["state"]["step"] == stopped_at
    epoch, position = ckpt["state"]["epoch"], ckpt["state"]["position"]

    # Start again with the same --out: it resumes by itself and runs the rest of that epoch only.
    done = subprocess.run([*argv, "--epochs", str(epoch)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = read_events(events)[len(evs):]
    start = after[0]
    assert start["event"] == "start" and start["resumed_from_step"] == stopped_at
    cfg = load_config(preset)
    ds = CompiledDataset(digits_ds)
    per_epoch = len(BucketBatchSampler(ds.train_ids, ds.widths, ds.height, cfg.batch_pixels, cfg.max_batch))
    epoch_event = next(e for e in after if e["event"] == "epoch")
    assert epoch_event["epoch"] == epoch
    assert epoch_event["step"] == epoch * per_epoch  # not a step repeated, not a step lost
    assert per_epoch - position == epoch_event["step"] - stopped_at
    assert after[-1]["event"] == "done" and (run / "model.pt").exists()


@pytest.mark.slow
def test_init_fine_tunes_and_extends_the_codec(learned_run: Path, tmp_path: Path) -> None:
    gt = write_digit_pairs(tmp_path / "gt", 40, 5)
    (gt / "l0000.gt.txt").write_text("12+34\n")  # a character the model has never seen
    compile_dataset([gt], tmp_path / "ds", height=32)
    result = train(tmp_path / "ds", tmp_path / "run", load_config("tiny", epochs=1),
                   events=EventWriter("ft", tmp_path / "ev.jsonl"), init=learned_run / "model.pt")
    model, codec, _ = load_model(result.model)
    old, _, _ = load_model(learned_run / "model.pt")
    assert codec == [*"0123456789", "+"] and model.out.out_features == 12
    start = read_events(tmp_path / "ev.jsonl")[0]
    assert start["resumed_from_step"] is None
    # it starts from what it knew: one epoch of fine-tuning is far better than the first epoch from scratch
    assert result.best_val_cer is not None and result.best_val_cer < _epochs(learned_run)[0]["val_cer"]
    assert old.out.weight.shape[0] == 11


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.htr", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", ["synth", "compile", "train", "infer"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    from jobs.htr.__main__ import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "Example:" in text and f"python -m jobs.htr {command}" in text


def test_bad_input_is_one_line_without_traceback(tmp_path: Path, digits_ds: Path) -> None:
    for args in (["train", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")],
                 ["train", str(digits_ds), "--out", str(tmp_path / "r2"), "--preset", "huge"],
                 ["infer", "--model", str(tmp_path / "none.pt"), str(tmp_path)]):
        result = _cli(*args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_training_uses_the_budget_the_probe_found(digits_ds: Path, tmp_path: Path) -> None:
    cfg = load_config("tiny", epochs=1, batch_pixels=400_000)
    events = EventWriter("probe", tmp_path / "ev.jsonl")
    train(digits_ds, tmp_path / "run", cfg, events=events, memory_pixels=30_000)  # a 'device' that fills up
    start = read_events(tmp_path / "ev.jsonl")[0]
    assert start["batch_pixels"] < 400_000
    widest = int(CompiledDataset(digits_ds).widths.max())
    lines = max(1, min(cfg.max_batch, start["batch_pixels"] // (32 * widest)))
    assert lines * 32 * widest <= 30_000
