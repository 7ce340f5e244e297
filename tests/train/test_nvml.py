"""GPU utilisation through NVML (`pynvml`, nvidia-ml-py): in the `trainer` extra as in the image,
and silent where there is no GPU (the trainer reports null, the launcher counts it unknown)."""

from __future__ import annotations

import re
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import torch

from jobs.htr import hardware

ROOT = Path(__file__).resolve().parents[2]


def test_the_trainer_extra_pins_nvidia_ml_py_as_the_image_does() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["trainer"]
    (pin,) = [d for d in extra if d.startswith("nvidia-ml-py")]
    image = re.search(r"nvidia-ml-py==([\d.]+)", (ROOT / "jobs/image/Dockerfile").read_text())
    assert image is not None and pin == f"nvidia-ml-py=={image.group(1)}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU answers: see the test below")
def test_without_a_gpu_nvml_is_silent_and_reports_none(capfd: pytest.CaptureFixture[str]) -> None:
    import pynvml  # installed with the trainer extra: its absence would make this test moot

    hardware._nvml.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.nvml_utilization(torch.device("cuda", 0)) is None  # NVML's init fails here
        assert hardware.gpu_stats(torch.device("cpu")) == (None, None)
    assert hardware._nvml() is None  # init failed once: not tried again
    with pytest.raises(pynvml.NVMLError):  # what _nvml() swallowed: no NVML on this machine
        pynvml.nvmlInit()
    assert capfd.readouterr() == ("", "")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_nvml_reports_a_share() -> None:
    hardware._nvml.cache_clear()
    util = hardware.nvml_utilization(torch.device("cuda", 0))
    assert util is not None and 0.0 <= util <= 1.0
    assert hardware.gpu_stats(torch.device("cuda", 0))[0] is not None


def test_without_the_package_utilisation_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    hardware._nvml.cache_clear()
    try:
        assert hardware._nvml() is None
        assert hardware.nvml_utilization(torch.device("cuda", 0)) is None
    finally:
        hardware._nvml.cache_clear()
