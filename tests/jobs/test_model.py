"""The CRNN, its config presets, precision choice, the bucketed sampler and the batch-size probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jobs.htr.config import PRESETS, ConfigError, TrainConfig, load_config
from jobs.htr.errors import HtrError
from jobs.htr.hardware import physical_cores, precision_for
from jobs.htr.model import CRNN, codec_index, count_parameters, encode, extend_codec, greedy_decode
from jobs.htr.probe import fit_batch_pixels
from jobs.htr.sampler import BucketBatchSampler, make_batches


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_and_build(preset: str) -> None:
    cfg = load_config(preset)
    model = CRNN(cfg, cfg.height, 80)
    images = torch.full((2, 1, cfg.height, 64), 255, dtype=torch.uint8)
    out = model(images)
    assert out.shape == (64 // 2 ** cfg.width_pools, 2, 80) and out.dtype == torch.float32
    assert torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-4)
    if preset == "default":
        assert 5_000_000 <= count_parameters(model) <= 9_000_000
        assert 64 <= cfg.height <= 96


def test_parameter_counts_grow_with_the_preset() -> None:
    counts = [count_parameters(CRNN(c, c.height, 80)) for c in map(load_config, ("tiny", "small", "default", "large"))]
    assert counts == sorted(counts)


def test_unknown_keys_and_bad_values_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("lstm_hiden = 12\n")
    with pytest.raises(ConfigError, match="lstm_hiden"):
        load_config(bad)
    with pytest.raises(ConfigError, match="lstm_layers"):
        load_config("tiny", lstm_layers=0)
    with pytest.raises(ConfigError, match="no preset"):
        load_config("huge")
    assert load_config("tiny", epochs=3, lr=None).epochs == 3  # None keeps the preset's value


def test_every_config_field_is_commented() -> None:
    source = Path(__file__).parents[2].joinpath("jobs/htr/config.py").read_text()
    for name in TrainConfig.__dataclass_fields__:
        line = next(ln for ln in source.splitlines() if ln.strip().startswith(f"{name}:"))
        assert "#" in line, name


@pytest.mark.parametrize(("device", "bf16", "expected"), [
    ("cpu", False, "fp32"), ("cpu", True, "fp32"),  # CPU: fp32 whatever it claims
    ("cuda", False, "fp16"),  # T4: no native bf16 -> fp16 + GradScaler
    ("cuda", True, "bf16"),  # L4, A10G, H200
])
def test_precision_follows_the_hardware(device: str, bf16: bool, expected: str) -> None:
    assert precision_for(device, bf16) == expected


def test_physical_cores_is_sane() -> None:
    import os

    assert 1 <= physical_cores() <= (os.cpu_count() or 1)


def test_greedy_decode_merges_repeats_and_drops_blanks() -> None:
    codec = ["a", "b"]
    frames = [1, 1, 0, 1, 2, 2, 0]  # a a _ a b b _  ->  "aab"
    log_probs = torch.full((len(frames), 1, 3), -20.0)
    for t, c in enumerate(frames):
        log_probs[t, 0, c] = 0.0
    (text, conf), = greedy_decode(log_probs, torch.tensor([len(frames)]), codec)
    assert text == "aab" and conf == pytest.approx(1.0, abs=1e-6)
    assert encode("abz", codec_index(codec)) == [1, 2]


def test_extend_codec_keeps_old_rows_and_adds_new_ones() -> None:
    cfg = load_config("tiny")
    model = CRNN(cfg, 32, 3)
    old_w = model.out.weight.detach().clone()
    codec = extend_codec(model, ["a", "b"], ["b", "c", "a", "d"])
    assert codec == ["a", "b", "c", "d"]
    assert model.out.out_features == 5
    assert torch.equal(model.out.weight[:3], old_w)
    assert model(torch.zeros(1, 1, 32, 40, dtype=torch.uint8)).shape[-1] == 5


def test_batches_respect_the_pixel_budget_and_cover_every_line() -> None:
    rng = np.random.default_rng(0)
    widths = rng.integers(50, 900, size=500)
    ids = np.arange(500)
    batches = make_batches(ids, widths, 32, 100_000, 16, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * 32 * max(widths[b]) <= 100_000
    # bucketing: a batch holds lines of similar width, so padding stays small
    padded = sum(len(b) * max(widths[b]) for b in batches)
    assert padded < 1.25 * widths.sum()


def test_sampler_resumes_mid_epoch_and_shards_for_ddp() -> None:
    widths = np.random.default_rng(0).integers(50, 400, size=300)
    full = BucketBatchSampler(np.arange(300), widths, 32, 40_000, 8, seed=3)
    full.set_position(epoch=2)
    order = list(full)
    resumed = BucketBatchSampler(np.arange(300), widths, 32, 40_000, 8, seed=3)
    resumed.set_position(epoch=2, start=5)
    assert list(resumed) == order[5:]
    assert list(resumed) == order  # the start applies to one pass only
    full.set_position(epoch=3)
    assert list(full) != order  # a new order every epoch
    ranks = [BucketBatchSampler(np.arange(300), widths, 32, 40_000, 8, seed=3, rank=r, world_size=2)
             for r in (0, 1)]
    for r in ranks:
        r.set_position(epoch=2)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) and not {i for x in a for i in x} & {i for x in b for i in x}


def test_batch_probe_backs_off_on_out_of_memory() -> None:
    cfg = load_config("tiny")
    model = CRNN(cfg, 32, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    budget = fit_batch_pixels(model, torch.device("cpu"), "fp32", 32, 300, 1_000_000, 64,
                              memory_pixels=120_000)
    assert 32 * 300 <= budget <= 1_000_000
    lines = max(1, min(64, budget // (32 * 300)))
    twice = max(1, min(64, 2 * budget // (32 * 300)))
    assert lines * 32 * 300 <= 120_000 < twice * 32 * 300  # the largest halving that fits
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(HtrError, match="does not fit"):
        fit_batch_pixels(model, torch.device("cpu"), "fp32", 32, 300, 1_000_000, 64, memory_pixels=1000)
