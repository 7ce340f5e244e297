"""From a compiled dataset to batches on the device: the Dataset, collate, the DataLoader.

Images stay uint8 all the way to the device (4x less to copy than float32) and become floats in
the model's first line. Workers read straight from the memory map: nothing is decoded, and a
dataset larger than RAM is paged in by the OS.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from jobs.htr.config import TrainConfig
from jobs.htr.dataset import CompiledDataset, compile_dataset, is_compiled_dataset
from jobs.htr.model import codec_index, encode
from jobs.htr.sampler import BucketBatchSampler

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[int]]


class LineDataset(Dataset):  # type: ignore[type-arg]
    """Line i of a compiled dataset as (image uint8 (H, W), label ids)."""

    def __init__(self, data: CompiledDataset, codec: list[str]) -> None:
        self.data = data
        self.index = codec_index(codec)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[int], int]:
        return self.data.image(i), encode(self.data.text(i), self.index), i


def collate(items: list[tuple[np.ndarray, list[int], int]]) -> Batch:
    """Pad to the widest line with paper (255): (images (B, 1, H, W) uint8, targets (sum L,),
    target lengths (B,), widths (B,), line ids)."""
    height = items[0][0].shape[0]
    widest = max(img.shape[1] for img, _, _ in items)
    images = np.full((len(items), 1, height, widest), 255, dtype=np.uint8)
    for k, (img, _, _) in enumerate(items):
        images[k, 0, :, : img.shape[1]] = img
    targets = torch.tensor([c for _, label, _ in items for c in label], dtype=torch.long)
    lengths = torch.tensor([len(label) for _, label, _ in items], dtype=torch.long)
    widths = torch.tensor([img.shape[1] for img, _, _ in items], dtype=torch.long)
    return torch.from_numpy(images), targets, lengths, widths, [i for _, _, i in items]


def _worker_init(_: int) -> None:
    # A spot notice (SIGTERM to the process group) is the main process's to handle: it checkpoints
    # and then ends the workers. A worker killed first would turn the notice into a crash.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def worker_count(cfg: TrainConfig, world_size: int) -> int:
    """cfg.workers, or for -1: min(4, CPUs per process - 1) (0 on a single-CPU share)."""
    if cfg.workers >= 0:
        return cfg.workers
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus // max(1, world_size) - 1))


def make_loader(data: CompiledDataset, codec: list[str], sampler: BucketBatchSampler, workers: int,
                pin: bool) -> DataLoader:  # type: ignore[type-arg]
    """A DataLoader over `sampler`'s batches, with persistent workers prefetching ahead."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _worker_init}
    return DataLoader(LineDataset(data, codec), batch_sampler=sampler, collate_fn=collate,
                      num_workers=workers, pin_memory=pin, **extra)


def prepare_dataset(data: Path, run: Path, cfg: TrainConfig, *, rank: int = 0,
                    barrier: Any = None) -> CompiledDataset:
    """DATA as a compiled dataset: used as it is, or (ground truth) compiled once into RUN/dataset.

    A run started again finds RUN/dataset and does not compile twice. Only rank 0 compiles;
    `barrier()` makes the other ranks wait for it.
    """
    data = Path(data)
    if is_compiled_dataset(data):
        return CompiledDataset(data)
    target = run / "dataset"
    if rank == 0 and not is_compiled_dataset(target):
        report = compile_dataset([data], target, height=cfg.height, normalization=cfg.normalization,
                                 val_fraction=cfg.val_fraction, seed=cfg.seed)
        print(report.summary(), file=sys.stderr, flush=True)  # stdout may carry the events
    if barrier is not None:
        barrier()
    return CompiledDataset(target)
