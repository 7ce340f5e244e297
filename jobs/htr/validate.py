"""Validation CER and WER: greedy CTC decoding scored with one scorer (rapidfuzz Levenshtein).

CER = character edits / reference characters; WER = word edits / reference words, both summed
over the whole validation set (not averaged per line, which would overweight short lines).
"""

from __future__ import annotations

import torch
from rapidfuzz.distance import Levenshtein
from torch import distributed as dist
from torch import nn

from jobs.htr.data import collate
from jobs.htr.dataset import CompiledDataset
from jobs.htr.hardware import autocast_dtype
from jobs.htr.model import CRNN, greedy_decode
from jobs.htr.sampler import make_batches


def edit_counts(hypothesis: str, reference: str) -> tuple[int, int, int, int]:
    """(character edits, reference characters, word edits, reference words)."""
    ref_words = reference.split()
    return (Levenshtein.distance(hypothesis, reference), len(reference),
            Levenshtein.distance(hypothesis.split(), ref_words), len(ref_words))


def _sync_buffers(model: nn.Module) -> None:
    # DDP keeps parameters equal; BatchNorm running statistics drift per rank. Rank 0's win, so
    # that every rank validates (and exports) the same model.
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


@torch.no_grad()
def validate(model: CRNN, data: CompiledDataset, codec: list[str], device: torch.device, precision: str,
             batch_pixels: int, max_batch: int, rank: int = 0,
             world: int = 1) -> tuple[float | None, float | None]:
    """(CER, WER) on the validation split, shared across DDP ranks; (None, None) without one."""
    if not len(data.val_ids):
        return None, None
    if world > 1:
        _sync_buffers(model)
    model.eval()
    batches = make_batches(data.val_ids, data.widths, data.height, batch_pixels, max_batch, None)
    totals = torch.zeros(4, dtype=torch.float64)
    dtype = autocast_dtype(precision)
    for ids in batches[rank::world]:
        images, _, _, widths, _ = collate([(data.image(i), [], i) for i in ids])
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            log_probs = model(images.to(device))
        for i, (text, _) in zip(ids, greedy_decode(log_probs, model.frames(widths), codec), strict=True):
            totals += torch.tensor(edit_counts(text, data.text(i)), dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
    chars, words = float(totals[1]), float(totals[3])
    cer = float(totals[0]) / chars if chars else 0.0
    wer = float(totals[2]) / words if words else 0.0
    return round(cer, 5), round(wer, 5)
