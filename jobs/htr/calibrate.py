"""A few real training steps on a compiled dataset, timed: how fast this machine trains a model.

    cal = measure(Path("dataset"), load_config("small"), seconds=4.0)
    cal.lines_per_s, cal.parameters

The launcher's first quote on a machine comes from here (launcher/train/quote.py) rather than
from a constant: the same setup as a run (jobs.htr.train.setup: data loader, model, optimizer,
CPU threads), the same step (train_step), on the job's own lines. Nothing is written but a
temporary run folder, removed at the end; no event is emitted.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.htr import ddp
from jobs.htr.config import TrainConfig, load_config
from jobs.htr.dataset import CompiledDataset
from jobs.htr.events import EventWriter
from jobs.htr.interrupt import Signals
from jobs.htr.model import CRNN, count_parameters
from jobs.htr.train import setup, train_step

WARMUP_BATCHES = 2  # first allocations and the autograd graph's first build are not training speed


@dataclass(frozen=True)
class Calibration:
    """What the timed steps measured."""

    lines: int  # lines trained on in the timed steps
    seconds: float  # wall seconds of the timed steps (data loading included, as in a run)
    parameters: int  # the model's parameter count (with this dataset's codec)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def parameters(data: Path, cfg: TrainConfig) -> int:
    """The parameter count of the model `cfg` builds for the compiled dataset `data`."""
    ds = CompiledDataset(data)
    return count_parameters(CRNN(cfg, ds.height, len(ds.codec) + 1))


def preset_parameters(data: Path, preset: str) -> int:
    """`parameters` for a preset name or .toml file."""
    return parameters(data, load_config(preset))


def measure(data: Path, cfg: TrainConfig, *, seconds: float = 4.0, device: str = "cpu",
            max_batches: int = 400) -> Calibration:
    """Train on `data` (a compiled dataset) for about `seconds` after a short warm-up; time it."""
    with tempfile.TemporaryDirectory(prefix="gpuhire-calibrate-") as tmp:
        ctx, _ = setup(data, Path(tmp), cfg, EventWriter("calibration", enabled=False), None,
                       device, None, Signals(), ddp.Group())
        done = lines = 0
        started: float | None = None
        elapsed = 0.0
        try:
            while done < max_batches + WARMUP_BATCHES and elapsed < seconds:
                ctx.net.train()
                for batch in ctx.loader:  # one epoch's batches at most, then again if time is left
                    train_step(ctx, batch, last_micro=True)
                    done += 1
                    if done == WARMUP_BATCHES:
                        started = time.monotonic()
                    elif started is not None:
                        lines += len(batch[4])
                        elapsed = time.monotonic() - started
                    if done >= max_batches + WARMUP_BATCHES or elapsed >= seconds:
                        break
            params = count_parameters(ctx.model)
        finally:
            del ctx  # ends the loader's worker processes, if it has any
    return Calibration(lines, elapsed, params)
