"""Width-bucketed batches under a pixel budget, in a seeded order that can resume mid-epoch.

Each epoch the training ids are shuffled (seed + epoch), cut into pools of a few hundred lines,
each pool sorted by width and cut into batches whose padded size (lines x height x widest line)
stays under `batch_pixels`; then the batches are shuffled. Lines of similar width share a batch,
so little of a batch is padding, and narrow lines come many to a batch, wide ones few.

Under DDP every rank computes the same list and takes every world_size-th batch; the list is cut
to a multiple of world_size so that all ranks run the same number of steps. `start` skips the
batches already trained on in this epoch (the resume position), and applies to one pass only.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

POOL_BATCHES = 16  # a pool holds about this many batches' worth of lines
MIN_BATCH_LINES = 4  # the batch policy for small sets never goes below this many lines a batch


def batch_cap(max_batch: int, lines: int, min_steps: int, world_size: int = 1) -> int:
    """The most lines in a batch: `max_batch`, lowered on a small set so that each of
    `world_size` processes gets at least `min_steps` batches an epoch (0 = no such floor), but
    never below MIN_BATCH_LINES (nor above max_batch). A few hundred lines cut into batches by
    the pixel budget alone give a handful of optimizer steps an epoch, and a model that takes
    five steps an epoch is still at CER 1.0 after several epochs."""
    if min_steps <= 0:
        return max_batch
    per_process = lines // max(1, world_size)
    return max(min(max_batch, MIN_BATCH_LINES), min(max_batch, per_process // min_steps))


def make_batches(ids: np.ndarray, widths: np.ndarray, height: int, batch_pixels: int, max_batch: int,
                 rng: np.random.Generator | None) -> list[list[int]]:
    """Cut `ids` into width-bucketed batches (shuffled when `rng` is given, else in width order)."""
    ids = np.asarray(ids, dtype=np.int64)
    if rng is not None:
        ids = ids[rng.permutation(len(ids))]
    pool = max(max_batch * POOL_BATCHES, 1) if rng is not None else max(len(ids), 1)
    batches: list[list[int]] = []
    for start in range(0, len(ids), pool):
        chunk = ids[start:start + pool]
        chunk = chunk[np.argsort(widths[chunk], kind="stable")]
        batch: list[int] = []
        widest = 0
        for i in chunk.tolist():
            w = max(widest, int(widths[i]))
            if batch and ((len(batch) + 1) * height * w > batch_pixels or len(batch) >= max_batch):
                batches.append(batch)
                batch, w = [], int(widths[i])
            batch.append(i)
            widest = w
        if batch:
            batches.append(batch)
    if rng is not None:
        order = rng.permutation(len(batches))
        batches = [batches[k] for k in order]
    return batches


class BucketBatchSampler:
    """A batch sampler for `torch.utils.data.DataLoader(batch_sampler=...)` (see the module doc)."""

    def __init__(self, ids: np.ndarray, widths: np.ndarray, height: int, batch_pixels: int,
                 max_batch: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.ids, self.widths, self.height = np.asarray(ids), np.asarray(widths), height
        self.batch_pixels, self.max_batch = batch_pixels, max_batch
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch = 0
        self.start = 0  # batches of this rank already done in `epoch` (the resume position)

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Next pass: epoch `epoch`, skipping its first `start` batches (of this rank)."""
        self.epoch, self.start = epoch, start

    def _all(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        batches = make_batches(self.ids, self.widths, self.height, self.batch_pixels, self.max_batch, rng)
        if self.world_size > 1:
            batches = batches[: len(batches) - len(batches) % self.world_size]
            batches = batches[self.rank::self.world_size]
        return batches

    def __len__(self) -> int:
        """Batches of this rank in a full epoch."""
        return len(self._all())

    def __iter__(self) -> Iterator[list[int]]:
        batches, start = self._all(), self.start
        self.start = 0
        yield from batches[start:]
