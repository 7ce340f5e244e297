"""The batch-size probe: the largest pixel budget (halving from the configured one) at which a
batch of the widest training lines survives a forward and backward pass without running out of
device memory.

`memory_pixels` simulates a device that runs out of memory above that many pixels per batch:
it raises the same `torch.OutOfMemoryError` the CUDA allocator raises, so the back-off is tested
on a CPU, through the same code path.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F  # noqa: N812

from jobs.htr.errors import HtrError
from jobs.htr.hardware import autocast_dtype
from jobs.htr.model import CRNN


def _try_batch(model: CRNN, device: torch.device, precision: str, lines: int, height: int, width: int,
               memory_pixels: int | None) -> None:
    pixels = lines * height * width
    if memory_pixels is not None and pixels > memory_pixels:
        raise torch.OutOfMemoryError(f"simulated: {pixels} pixels > {memory_pixels}")
    images = torch.randint(0, 256, (lines, 1, height, width), dtype=torch.uint8, device=device)
    dtype = autocast_dtype(precision)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        log_probs = model(images)
    frames = model.frames(torch.full((lines,), width, device=device))
    target_len = max(1, int(frames[0]) // 2)  # a long label: CTC's worst case
    targets = torch.ones(lines * target_len, dtype=torch.long, device=device)
    loss = F.ctc_loss(log_probs, targets, frames, torch.full((lines,), target_len, device=device),
                      zero_infinity=True)
    loss.backward()


def fit_batch_pixels(model: CRNN, device: torch.device, precision: str, height: int, widest: int,
                     batch_pixels: int, max_batch: int, *, memory_pixels: int | None = None) -> int:
    """The pixel budget to train with: `batch_pixels`, halved until the probe batch fits.

    The model is left exactly as it was (weights, BatchNorm statistics, no gradients).
    """
    saved = copy.deepcopy(model.state_dict())
    model.train()
    try:
        while True:
            lines = max(1, min(max_batch, batch_pixels // (height * widest)))
            try:
                _try_batch(model, device, precision, lines, height, widest, memory_pixels)
                return max(batch_pixels, height * widest)
            except torch.OutOfMemoryError as exc:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if lines == 1:
                    raise HtrError(f"one {widest} px wide line does not fit in {device} memory ({exc})",
                                   "use a smaller preset, or cut very wide lines out of the ground truth"
                                   ) from exc
                batch_pixels //= 2
            finally:
                model.zero_grad(set_to_none=True)
    finally:
        model.load_state_dict(saved)

