"""Small ground-truth sets learn from the first epochs: the batch policy (enough optimizer steps
an epoch), a warm-up in proportion to the data, the blank's initial bias; and a run on a small
set that shows it (the same run with the old policy stays at CER 1.0)."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs.htr.config import ConfigError, TrainConfig, load_config
from jobs.htr.dataset import CompiledDataset
from jobs.htr.events import EventWriter, read_events
from jobs.htr.model import CRNN
from jobs.htr.sampler import MIN_BATCH_LINES, BucketBatchSampler, batch_cap
from jobs.htr.train import train, warmup_steps

# ------------------------------------------------------------------ the batch policy


def test_batch_cap_leaves_large_sets_to_the_pixel_budget() -> None:
    assert batch_cap(48, 100_000, 40) == 48  # 2,500 lines a step would be allowed: max_batch stands
    assert batch_cap(48, 360, 0) == 48  # 0 = no policy


def test_batch_cap_gives_a_small_set_enough_steps_an_epoch() -> None:
    assert batch_cap(48, 360, 40) == 9  # 360 lines: 40 steps of 9
    assert batch_cap(48, 360, 40, world_size=2) == 4  # each of 2 processes: 180 lines
    assert batch_cap(48, 50, 40) == MIN_BATCH_LINES  # never fewer lines than that ...
    assert batch_cap(2, 50, 40) == 2  # ... unless max_batch itself is smaller


def test_the_capped_sampler_has_at_least_the_steps_asked_for() -> None:
    widths = np.random.default_rng(0).integers(300, 1200, size=360)
    lines = batch_cap(48, 360, 40)
    sampler = BucketBatchSampler(np.arange(360), widths, 64, 2_000_000, lines, seed=1)
    uncapped = BucketBatchSampler(np.arange(360), widths, 64, 2_000_000, 48, seed=1)
    assert len(uncapped) < 40 <= len(sampler)
    assert sorted(i for b in sampler for i in b) == list(range(360))  # every line, once


# ------------------------------------------------------------------ warm-up and the blank's bias


def test_warm_up_is_at_most_the_configured_epochs_of_steps() -> None:
    cfg = TrainConfig(warmup_steps=100, warmup_epochs=1.0)
    assert warmup_steps(cfg, 9) == 9  # a small set: one epoch
    assert warmup_steps(cfg, 1000) == 100  # a large one: the configured steps
    assert warmup_steps(TrainConfig(warmup_steps=100, warmup_epochs=0.0), 9) == 100  # 0 = off
    assert warmup_steps(TrainConfig(warmup_steps=100, warmup_epochs=0.5), 9) == 5


def test_the_blank_starts_with_its_configured_bias() -> None:
    import torch

    def out_bias(blank_bias: float) -> torch.Tensor:
        torch.manual_seed(7)  # the same initial weights, but for the blank's bias
        model = CRNN(TrainConfig(blank_bias=blank_bias, channels=(8, 8), lstm_hidden=8, lstm_layers=1), 32, 5)
        return model.out.bias.detach()

    with_bias, without = out_bias(2.5), out_bias(0.0)
    assert float(with_bias[0] - without[0]) == pytest.approx(2.5)  # the blank (class 0) only
    assert torch.equal(with_bias[1:], without[1:])


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="min_steps_per_epoch"):
        load_config("small", min_steps_per_epoch=-1)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        load_config("small", warmup_epochs=-0.5)


def test_the_presets_a_user_trains_with_carry_the_policy() -> None:
    for preset in ("small", "default", "large"):
        cfg = load_config(preset)
        assert cfg.min_steps_per_epoch > 0 and cfg.warmup_epochs > 0 and cfg.blank_bias > 0, preset
    assert load_config("tiny").min_steps_per_epoch == 0  # the tests count tiny's batches


# ------------------------------------------------------------------ it learns on a small set


class _Enough(Exception):
    """Raised from the event writer: the epochs the test needs are done."""


def test_a_small_set_learns_within_three_epochs(digits_ds: Path, tmp_path: Path) -> None:
    # 270 training lines under a pixel budget that, as the real presets' budgets do on a few
    # hundred lines, cuts them into ~5 batches an epoch, and a warm-up of 100 steps: without the
    # policy validation CER stays at 1.0 for (at least) the first three epochs.
    cfg = load_config("tiny", epochs=20, batch_pixels=400_000, max_batch=64, warmup_steps=100,
                      min_steps_per_epoch=100, warmup_epochs=1.0)
    data = CompiledDataset(digits_ds)
    old = BucketBatchSampler(data.train_ids, data.widths, data.height, cfg.batch_pixels, cfg.max_batch)
    assert len(old) <= 6  # what the run would get without the policy

    class Stop(EventWriter):
        def emit(self, event: str, **fields: Any) -> dict[str, Any]:
            record = super().emit(event, **fields)
            if event == "epoch" and fields["epoch"] == 3:
                raise _Enough
            return record

    with contextlib.suppress(_Enough):
        train(digits_ds, tmp_path / "run", cfg, events=Stop("small", tmp_path / "ev.jsonl"))
    events = read_events(tmp_path / "ev.jsonl")
    start = events[0]
    assert start["max_batch"] == MIN_BATCH_LINES and start["warmup_steps"] == math.ceil(270 / 4)
    cers = [e["val_cer"] for e in events if e["event"] == "epoch"]
    assert len(cers) == 3 and cers[0] > 0.5  # it starts knowing nothing ...
    assert cers[-1] < 0.5  # ... and has learnt most characters by the third epoch
