"""A spot notice during setup (compiling the ground truth, the batch-size probe) still ends the
run cleanly: `interrupted`, exit 143, a checkpoint whenever there is a model to save, nothing half
written; a bad preset or flag is an `error` event once the events file is known."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from conftest import write_digit_pairs

from jobs.htr import data as htr_data
from jobs.htr import dataset as htr_dataset
from jobs.htr import train as htr_train
from jobs.htr.__main__ import main
from jobs.htr.checkpoint import load_checkpoint
from jobs.htr.config import load_config
from jobs.htr.events import EventWriter, read_events, validate_event
from jobs.htr.train import train


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # what the spot watcher does; the handler runs right here


@pytest.fixture
def gt(tmp_path: Path) -> Path:
    return write_digit_pairs(tmp_path / "gt", 40, 3)  # 40 files: compile uses worker processes


def _events(path: Path) -> list[dict]:
    events = read_events(path)
    assert all(validate_event(e) == [] for e in events), events
    return events


def test_sigterm_while_compiling_stops_at_once_and_leaves_nothing_half_written(
        gt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = htr_dataset._stream
    started = []

    def stream(samples, tmp, assigner):
        def lines():  # the notice comes after a few lines, the decoding workers busy
            for k, sample in enumerate(samples):
                if k == 5:
                    started.append(tmp)
                    assert tmp.is_dir() and multiprocessing.active_children()
                    _sigterm_self()
                yield sample
        return real(lines(), tmp, assigner)

    monkeypatch.setattr(htr_dataset, "_stream", stream)
    before = signal.getsignal(signal.SIGTERM)
    run, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    result = train(gt, run, load_config("tiny", epochs=1), events=EventWriter("t", ev))
    assert started and result.stopped == "interrupted" and result.step == 0
    assert [e["event"] for e in _events(ev)] == ["interrupted"]  # no start: nothing was ready
    interrupted = _events(ev)[0]
    assert interrupted["signal"] == "SIGTERM" and interrupted["checkpoint"] is None
    assert sorted(p.name for p in run.iterdir()) == []  # no dataset, no partial folder, no checkpoint
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
    assert multiprocessing.active_children() == []  # the compile's workers are gone

    # The same command again compiles and trains from zero.
    monkeypatch.setattr(htr_dataset, "_stream", real)
    again = train(gt, run, load_config("tiny", epochs=1), events=EventWriter("t", ev))
    assert again.stopped == "epochs" and (run / "dataset" / "meta.json").exists()


def test_sigterm_during_the_probe_writes_a_checkpoint_the_restart_resumes_from(
        digits_ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = htr_train.fit_batch_pixels
    probes = []

    def probe(*args, **kwargs):
        probes.append(1)
        _sigterm_self()  # recorded only: the model exists, the probe finishes
        return real(*args, **kwargs)

    monkeypatch.setattr(htr_train, "fit_batch_pixels", probe)
    run, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    cfg = load_config("tiny", epochs=1, batch_pixels=400_000)
    result = train(digits_ds, run, cfg, events=EventWriter("t", ev), memory_pixels=30_000)
    assert result.stopped == "interrupted" and result.step == 0
    kinds = [e["event"] for e in _events(ev)]
    assert kinds == ["start", "checkpoint", "interrupted"]
    start, ckpt_event, interrupted = _events(ev)
    assert ckpt_event["reason"] == "signal" and interrupted["checkpoint"] == str(run / "checkpoint.pt")
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["state"]["step"] == 0 and ckpt["batch_pixels"] == start["batch_pixels"] < 400_000

    # The restart does not probe again: the budget is in the checkpoint.
    again = train(digits_ds, run, cfg, events=EventWriter("t", ev), memory_pixels=30_000)
    assert again.stopped == "epochs" and len(probes) == 1
    restart = [e for e in _events(ev) if e["event"] == "start"][-1]
    assert restart["resumed_from_step"] == 0 and restart["batch_pixels"] == start["batch_pixels"]


def test_sigterm_before_the_model_of_a_resumed_run_names_its_checkpoint(
        digits_ds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, ev = tmp_path / "run", tmp_path / "ev.jsonl"
    first = train(digits_ds, run, load_config("tiny", epochs=1), events=EventWriter("t", ev))
    real = htr_train.prepare_dataset

    def prepare(*args, **kwargs):
        _sigterm_self()
        return real(*args, **kwargs)

    monkeypatch.setattr(htr_train, "prepare_dataset", prepare)
    result = train(digits_ds, run, load_config("tiny", epochs=2), events=EventWriter("t", ev))
    interrupted = _events(ev)[-1]
    assert result.stopped == "interrupted" and interrupted["event"] == "interrupted"
    assert interrupted["checkpoint"] == str(run / "checkpoint.pt") and interrupted["step"] == first.step


def test_the_cli_exits_143_for_a_notice_during_setup(gt: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = htr_data.compile_dataset

    def compile_dataset(*args, **kwargs):
        _sigterm_self()
        return real(*args, **kwargs)

    monkeypatch.setattr(htr_data, "compile_dataset", compile_dataset)
    ev = tmp_path / "ev.jsonl"
    code = main(["train", str(gt), "--out", str(tmp_path / "run"), "--preset", "tiny", "--events", str(ev)])
    assert code == 143 and _events(ev)[-1]["event"] == "interrupted"


@pytest.mark.parametrize(("flags", "message"), [
    (["--preset", "huge"], "no preset or config file 'huge'"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--checkpoint-minutes", "-1"], "checkpoint_minutes positive"),
])
def test_a_bad_preset_or_flag_is_an_error_event(digits_ds: Path, tmp_path: Path, flags: list[str],
                                                message: str, capsys: pytest.CaptureFixture[str]) -> None:
    ev = tmp_path / "ev.jsonl"
    assert main(["train", str(digits_ds), "--out", str(tmp_path / "run"), "--events", str(ev), *flags]) == 1
    (error,) = _events(ev)
    assert error["event"] == "error" and message in error["message"]
    assert capsys.readouterr().err.startswith("error: ")
