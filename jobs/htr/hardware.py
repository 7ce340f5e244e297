"""What the hardware decides: device, precision, CPU threads, GPU utilisation and memory."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch


def precision_for(device_type: str, bf16_native: bool) -> str:
    """The training precision for a device: bf16 where the GPU has it natively (Ampere and later:
    A10G, L4, H200), fp16 with a gradient scaler on older GPUs (T4), fp32 on CPU."""
    if device_type != "cuda":
        return "fp32"
    return "bf16" if bf16_native else "fp16"


def pick_precision(device: torch.device) -> str:
    """`precision_for` on the real device. `is_bf16_supported()` alone says yes on a T4 (emulated,
    slow), so native support is asked for explicitly and checked against compute capability 8.0."""
    if device.type != "cuda":
        return "fp32"
    native = (torch.cuda.get_device_capability(device) >= (8, 0)
              and torch.cuda.is_bf16_supported(including_emulation=False))
    return precision_for("cuda", native)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None: no autocast)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto`: this process's GPU when there is one, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device(requested)


def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads share a core: do not count them)."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores, current = set(), {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("physical id", "core id"):
                current[key] = value.strip()
            if key == "core id":
                cores.add((current.get("physical id"), current["core id"]))
        if cores:
            return max(1, min(len(cores), allowed))
    except OSError:
        pass
    return max(1, allowed)


def set_cpu_threads(processes: int = 1, threads: int = 0) -> int:
    """One torch thread per physical core, shared among `processes` (no oversubscription);
    `threads` > 0 sets the number outright."""
    threads = threads if threads > 0 else max(1, physical_cores() // max(1, processes))
    torch.set_num_threads(threads)
    return threads


def gpu_stats(device: torch.device) -> tuple[float | None, float | None]:
    """(utilisation 0-1, peak memory in GB) of a CUDA device; (None, None) elsewhere.

    Utilisation comes from NVML (`nvml_utilization`); without it only the memory is known.
    """
    if device.type != "cuda":
        return None, None
    mem = torch.cuda.max_memory_allocated(device) / 1e9
    return nvml_utilization(device), round(mem, 3)


@functools.cache
def _nvml() -> Any | None:
    """`pynvml`, started; None when NVML cannot answer in this process (the package or the
    driver's library missing). Cached: a driver does not appear while the trainer runs."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def nvml_utilization(device: torch.device) -> float | None:
    """The share of the last sample period (1/6 s to 1 s) in which a kernel ran on `device`,
    0-1, read through NVML (`pynvml`, from the nvidia-ml-py package in the `trainer` extra and
    the image). None, silently, where NVML cannot tell: no GPU, no driver (NVML's library is
    missing), the package not installed, or a device NVML does not report on (a MIG slice).

    The device is found by its UUID, so CUDA_VISIBLE_DEVICES renumbering cannot point at
    another GPU.
    """
    if device.type != "cuda":
        return None
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        handle = nvml.nvmlDeviceGetHandleByUUID(name)
        return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
    except nvml.NVMLError:  # not supported on this device, or it went away
        return None
    except (RuntimeError, AssertionError):  # torch without CUDA, or no such device
        return None
