"""The quote for N GPUs: one GPU's throughput x N x the scaling efficiency, the documented
default until the ledger has measured that GPU type with N GPUs, then the measured one."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.train.quote import (
    DEFAULT_SCALING_PER_DOUBLING,
    default_efficiency,
    job_throughput,
    per_speed_seconds,
    scaling_efficiency,
)
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job


@pytest.fixture
def book(tmp_path: Path) -> Ledger:
    return Ledger(open_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))


def _job(book: Ledger, name: str, size: str, rate: float, gpus: int | None, gpu: str = "t4") -> None:
    spec = {} if gpus is None else {"gpus": gpus}  # jobs from before --gpus have none: one GPU
    book.create_job(Job(id=name, kind="train", gpu_model=gpu, model_size=size, device="cuda",
                        lines_per_s=rate, spec=spec, status="done"))


def test_default_efficiency_is_085_per_doubling() -> None:
    assert DEFAULT_SCALING_PER_DOUBLING == 0.85
    assert default_efficiency(1) == 1.0
    assert default_efficiency(2) == pytest.approx(0.85)
    assert default_efficiency(4) == pytest.approx(0.7225)
    assert default_efficiency(8) == pytest.approx(0.614125)
    assert default_efficiency(4, 0.9) == pytest.approx(0.81)  # [train] scaling_per_doubling


def test_unmeasured_n_gpus_scale_one_gpus_default(book: Ledger) -> None:
    rate = job_throughput(book, "t4", "tiny", gpus=4)
    assert rate.lines_per_s == pytest.approx(40.0 * 4 * 0.7225)
    assert rate.source == "default x 4 GPUs x 0.72 (default scaling 0.85 per doubling)"
    mine = job_throughput(book, "t4", "tiny", gpus=4, per_doubling=1.0, overrides={"t4": 10.0})
    assert mine.lines_per_s == pytest.approx(40.0) and mine.source.startswith("config x 4 GPUs")


def test_measured_scaling_replaces_the_default(book: Ledger) -> None:
    _job(book, "a", "tiny", 40.0, None)  # one GPU (an old job without spec["gpus"])
    _job(book, "b", "tiny", 128.0, 4)  # four GPUs: 128 / (4 x 40) = 0.8
    _job(book, "c", "small", 20.0, 1)
    # the measured 4-GPU rate of the size itself
    tiny = job_throughput(book, "t4", "tiny", gpus=4)
    assert tiny.lines_per_s == 128.0 and tiny.source == "measured, 4 GPUs, median of 1 job(s)"
    # one GPU is never the 4-GPU job's figure
    assert job_throughput(book, "t4", "tiny").lines_per_s == 40.0
    # another size: its one-GPU rate x 4 x the measured efficiency for t4 and 4 GPUs
    eff, why = scaling_efficiency(book, "t4", 4)
    assert eff == pytest.approx(0.8) and why == "measured scaling over 1 size(s)"
    small = job_throughput(book, "t4", "small", gpus=4)
    assert small.lines_per_s == pytest.approx(20.0 * 4 * 0.8)
    # another type or N: still the default
    assert scaling_efficiency(book, "l4", 4)[0] == pytest.approx(0.7225)
    assert scaling_efficiency(book, "t4", 8)[0] == pytest.approx(0.614125)


def test_cpu_processes_share_the_cores(book: Ledger) -> None:
    eff, why = scaling_efficiency(book, "cpu", 2)
    assert eff == pytest.approx(0.5) and why == "CPU processes share the same cores"


def test_auto_weighs_n_gpu_boxes_by_their_scaled_speed() -> None:
    from decimal import Decimal

    one = per_speed_seconds({"t4": Decimal(1)})
    four = per_speed_seconds({"t4": Decimal(1)}, gpus=4)
    assert four("t4") == pytest.approx(one("t4") / (4 * 0.7225))
