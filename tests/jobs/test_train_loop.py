"""The training loop's rules, each on a small run of seconds: checkpoints every N minutes, early
stopping (patience, minimum epochs, the best model kept), the warm-up + cosine schedule, gradient
accumulation, and CER/WER summed over the validation set."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import draw_digits, write_digit_pairs

from jobs.htr import train as htr_train
from jobs.htr import validate as htr_validate
from jobs.htr.checkpoint import load_checkpoint
from jobs.htr.config import TrainConfig, load_config
from jobs.htr.dataset import CompiledDataset, compile_dataset
from jobs.htr.events import EventWriter, read_events
from jobs.htr.model import CRNN
from jobs.htr.sampler import BucketBatchSampler
from jobs.htr.train import lr_lambda, train, train_step


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 digit lines at 32 px (54 training, 6 validation): an epoch is about a dozen steps."""
    root = tmp_path_factory.mktemp("small")
    compile_dataset([write_digit_pairs(root / "gt", 60, 1)], root / "ds", height=32, seed=0)
    return root / "ds"


def _run(ds: Path, tmp_path: Path, **overrides: object) -> tuple[htr_train.TrainResult, list[dict]]:
    ev = tmp_path / "ev.jsonl"
    result = train(ds, tmp_path / "run", load_config("tiny", **overrides), events=EventWriter("t", ev))
    return result, read_events(ev)


def _steps_per_epoch(ds: Path, cfg: TrainConfig) -> int:
    data = CompiledDataset(ds)
    return len(BucketBatchSampler(data.train_ids, data.widths, data.height, cfg.batch_pixels, cfg.max_batch))


# ------------------------------------------------------------------ checkpoints every N minutes


def test_a_checkpoint_is_written_whenever_the_interval_has_passed(small_ds: Path, tmp_path: Path) -> None:
    result, events = _run(small_ds, tmp_path, epochs=1, checkpoint_minutes=1e-9)  # due at every step
    timer = [e["step"] for e in events if e["event"] == "checkpoint" and e["reason"] == "timer"]
    assert timer == list(range(1, result.step + 1))
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]["step"] == result.step


def test_no_timer_checkpoint_before_the_interval(small_ds: Path, tmp_path: Path) -> None:
    _, events = _run(small_ds, tmp_path, epochs=1, checkpoint_minutes=10.0)
    reasons = [e["reason"] for e in events if e["event"] == "checkpoint"]
    assert reasons == ["epoch"]


# ------------------------------------------------------------------ early stopping


def _scripted_cers(monkeypatch: pytest.MonkeyPatch, cers: list[float | None]) -> None:
    """validate() answers these CERs, epoch after epoch (the rule is tested, not the model)."""
    queue = iter(cers)

    def validate(*_args: object, **_kwargs: object) -> tuple[float | None, float | None]:
        cer = next(queue)
        return cer, cer

    monkeypatch.setattr(htr_train, "validate", validate)


def test_early_stopping_waits_patience_epochs_after_the_best(small_ds: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_cers(monkeypatch, [0.9, 0.5, 0.6, 0.55, 0.7, 0.4, 0.3])
    result, events = _run(small_ds, tmp_path, epochs=7, patience=3, min_epochs=1)
    assert result.stopped == "early-stopping" and result.epochs == 5  # best at 2, then 3 worse
    assert result.best_val_cer == 0.5
    assert torch.load(result.model, weights_only=True)["metrics"]["epoch"] == 2  # the best model kept
    assert events[-1]["event"] == "done" and events[-1]["stopped"] == "early-stopping"


def test_early_stopping_never_stops_before_min_epochs(small_ds: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_cers(monkeypatch, [0.5, 0.6, 0.7, 0.8, 0.9, 0.9])
    result, _ = _run(small_ds, tmp_path, epochs=6, patience=1, min_epochs=4)
    assert result.stopped == "early-stopping" and result.epochs == 4  # patience alone: after 2


def test_without_a_validation_split_it_runs_every_epoch(small_ds: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted_cers(monkeypatch, [None, None, None])
    result, _ = _run(small_ds, tmp_path, epochs=3, patience=1, min_epochs=1)
    assert result.stopped == "epochs" and result.epochs == 3


# ------------------------------------------------------------------ learning-rate schedule


def test_warm_up_then_cosine_decay_to_the_floor() -> None:
    cfg = TrainConfig(warmup_steps=10, lr_min_ratio=0.1)
    f = lr_lambda(cfg, total_steps=110)
    assert [round(f(s), 6) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]  # linear warm-up
    assert f(10) == pytest.approx(1.0)  # the peak
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))  # half-way: 0.55
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)  # the floor, and it stays
    decay = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(decay))  # never rises again


def test_the_schedule_moves_once_per_optimizer_step(small_ds: Path, tmp_path: Path) -> None:
    result, events = _run(small_ds, tmp_path, epochs=2, accum_steps=3, progress_seconds=0.0)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["scheduler"]["last_epoch"] == result.step
    cfg = load_config("tiny", epochs=2, accum_steps=3)
    f = lr_lambda(cfg, 2 * math.ceil(_steps_per_epoch(small_ds, cfg) / 3))
    for e in (e for e in events if e["event"] == "progress"):
        assert e["lr"] == pytest.approx(cfg.lr * f(e["step"]))


def test_the_run_warms_up_over_at_most_warmup_epochs(small_ds: Path, tmp_path: Path) -> None:
    _, events = _run(small_ds, tmp_path, epochs=2, warmup_steps=1000, warmup_epochs=0.5,
                     progress_seconds=0.0)
    per_epoch = _steps_per_epoch(small_ds, load_config("tiny"))
    start = events[0]
    assert start["warmup_steps"] == math.ceil(0.5 * per_epoch)  # not 1000
    cfg = load_config("tiny", epochs=2, warmup_steps=1000, warmup_epochs=0.5)
    f = lr_lambda(cfg, 2 * per_epoch, start["warmup_steps"])
    lrs = {e["step"]: e["lr"] for e in events if e["event"] == "progress"}
    assert lrs and all(lr == pytest.approx(cfg.lr * f(step)) for step, lr in lrs.items())
    assert max(lrs.values()) == pytest.approx(cfg.lr, rel=0.05)  # the peak is reached in the first epoch


def test_a_resume_keeps_the_batches_the_run_started_with(small_ds: Path, tmp_path: Path) -> None:
    _, first = _run(small_ds, tmp_path, epochs=1, min_steps_per_epoch=20)  # 54 lines: batches of 4
    assert first[0]["max_batch"] == 4
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["max_batch"] == 4
    # the same run again with another policy: it goes on with the batches it had
    result, events = _run(small_ds, tmp_path, epochs=2, min_steps_per_epoch=0)
    start = next(e for e in events if e["event"] == "start" and e["resumed_from_step"] is not None)
    assert start["max_batch"] == 4 and result.epochs == 2


# ------------------------------------------------------------------ gradient accumulation


def test_accumulation_takes_one_optimizer_step_per_accum_micro_batches(small_ds: Path, tmp_path: Path) -> None:
    cfg = load_config("tiny", epochs=2, accum_steps=4)
    per_epoch = _steps_per_epoch(small_ds, cfg)  # micro-batches
    assert per_epoch % 4  # the last, shorter group of an epoch takes a step of its own
    result, events = _run(small_ds, tmp_path, epochs=2, accum_steps=4)
    assert [e["step"] for e in events if e["event"] == "epoch"] == [math.ceil(per_epoch / 4) * k for k in (1, 2)]
    assert result.step == 2 * math.ceil(per_epoch / 4)


def test_two_accumulated_halves_give_the_step_of_the_whole_batch() -> None:
    torch.manual_seed(0)
    cfg = load_config("tiny", grad_clip=1e9)  # no clipping, so that the two compare exactly
    model = CRNN(cfg, 32, 11).eval()  # eval: BatchNorm's statistics do not depend on the split
    images = torch.randint(0, 256, (4, 1, 32, 96), dtype=torch.uint8)
    targets = torch.randint(1, 11, (4, 5))
    batch = (images, targets.flatten(), torch.full((4,), 5), torch.full((4,), 96), [0, 1, 2, 3])
    halves = [(images[k:k + 2], targets[k:k + 2].flatten(), torch.full((2,), 5), torch.full((2,), 96), [k, k + 1])
              for k in (0, 2)]

    def ctx(accum: int) -> SimpleNamespace:
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return SimpleNamespace(device=torch.device("cpu"), precision="fp32", world=1, net=m, model=m, opt=opt,
                               sched=torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0),
                               scaler=torch.amp.GradScaler("cpu", enabled=False),
                               cfg=load_config("tiny", grad_clip=1e9, accum_steps=accum))

    whole, split = ctx(1), ctx(2)
    train_step(whole, batch, last_micro=True)  # type: ignore[arg-type]
    train_step(split, halves[0], last_micro=False)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(split.model.parameters(), model.parameters(), strict=True))
    train_step(split, halves[1], last_micro=True)  # type: ignore[arg-type]
    for a, b in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(whole.model.parameters(), model.parameters(), strict=True))


# ------------------------------------------------------------------ CER and WER


def test_edit_counts_give_character_and_word_edits() -> None:
    assert htr_validate.edit_counts("the bat sat", "the cat sat") == (1, 11, 1, 3)
    assert htr_validate.edit_counts("thecat sat", "the cat sat") == (1, 11, 2, 3)  # a lost space: 2 words
    assert htr_validate.edit_counts("", "ab cd") == (5, 5, 2, 2)


def test_cer_and_wer_are_summed_over_the_validation_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gt = tmp_path / "gt"
    gt.mkdir()
    texts = ["12 345 6", "7 8", "90 12 34 56", "1 2 3", "45 678", "9 0 1 2 3 4"]
    for k, text in enumerate(texts):
        draw_digits(text).save(gt / f"l{k}.png")
        (gt / f"l{k}.gt.txt").write_text(text + "\n")
    compile_dataset([gt], tmp_path / "ds", height=32, val_fraction=0.99)
    data = CompiledDataset(tmp_path / "ds")
    assert len(data.val_ids) >= 4  # the split keeps one line for training

    # Every line is recognised without its last word; lines differ in length, so a mean of the
    # per-line rates would differ from edits / reference counts over the set.
    seen: list[int] = []
    real_collate = htr_validate.collate
    monkeypatch.setattr(htr_validate, "collate", lambda items: (seen.clear(), seen.extend(i for *_, i in items),
                                                                real_collate(items))[2])
    monkeypatch.setattr(htr_validate, "greedy_decode",
                        lambda *_: [(data.text(i).rsplit(" ", 1)[0], 1.0) for i in seen])
    model = CRNN(load_config("tiny"), 32, len(data.codec) + 1)
    cer, wer = htr_validate.validate(model, data, data.codec, torch.device("cpu"), "fp32", 24_000, 32)
    refs = [data.text(i) for i in data.val_ids]
    char_edits = sum(len(t) - len(t.rsplit(" ", 1)[0]) for t in refs)
    assert cer == round(char_edits / sum(len(t) for t in refs), 5)
    assert wer == round(len(refs) / sum(len(t.split()) for t in refs), 5)
    assert wer != round(sum(1 / len(t.split()) for t in refs) / len(refs), 5)
