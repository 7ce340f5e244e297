"""Following a job: parse the trainer's JSON-line events and show progress.

The event stream is documented in docs/events.md (written by the trainer, jobs/htr/events.py).
The launcher only relies on `event` and the fields it shows; unknown events are kept in the log
and otherwise ignored, so a newer trainer never breaks an older launcher.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from launcher.output import usd


@dataclass
class JobProgress:
    """What is known about a running job, folded from its events."""

    epochs_total: int | None = None
    epoch: int = 0
    step: int = 0
    lines_per_s: float | None = None
    data_wait_fraction: float | None = None
    gpu_util: float | None = None
    val_cer: float | None = None
    best_cer: float | None = None
    device: str | None = None
    precision: str | None = None
    last_checkpoint: str | None = None
    done: bool = False
    interrupted: bool = False
    error: str | None = None
    model_path: str | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    gpu_utils: list[float] = field(default_factory=list)
    lines_per_s_all: list[float] = field(default_factory=list)
    data_waits: list[float] = field(default_factory=list)
    resumed_from_step: int | None = None
    world_size: int | None = None  # trainer processes of the latest attempt (torchrun: one per GPU)
    started_at: float | None = None  # monotonic: the launcher started the trainer
    first_step_at: float | None = None  # monotonic: the first progress or epoch event seen
    done_at: float | None = None  # monotonic: the done event seen

    def apply(self, ev: dict[str, Any]) -> None:
        """Fold one event into the state."""
        kind = ev.get("event")
        if kind in ("progress", "epoch") and self.first_step_at is None:
            self.first_step_at = time.monotonic()
        if kind == "start":
            self.device = ev.get("device")
            self.precision = ev.get("precision")
            self.epochs_total = ev.get("epochs") or self.epochs_total
            self.resumed_from_step = ev.get("resumed_from_step")
            world = ev.get("world_size")
            self.world_size = world if isinstance(world, int) and world > 0 else self.world_size
        elif kind == "progress":
            self.epoch = int(ev.get("epoch", self.epoch) or self.epoch)
            self.step = int(ev.get("step", self.step) or self.step)
            if ev.get("lines_per_s") is not None:
                self.lines_per_s = float(ev["lines_per_s"])
        elif kind == "epoch":
            self._epoch(ev)
        elif kind == "checkpoint":
            self.last_checkpoint = ev.get("path")
            self.step = int(ev.get("step", self.step) or self.step)
        elif kind == "interrupted":
            self.interrupted = True
        elif kind == "done":
            self.done = True
            self.done_at = time.monotonic()
            self.model_path = ev.get("model") or ev.get("model_path")
            if ev.get("best_val_cer") is not None:
                self.best_cer = float(ev["best_val_cer"])
        elif kind == "error":
            self.error = str(ev.get("message", "unknown error"))

    def _epoch(self, ev: dict[str, Any]) -> None:
        self.epoch = int(ev.get("epoch", self.epoch + 1))
        for name, bucket in (("lines_per_s", self.lines_per_s_all),
                             ("data_wait_fraction", self.data_waits),
                             ("gpu_util", self.gpu_utils)):
            value = ev.get(name)
            if value is not None:
                bucket.append(float(value))
                setattr(self, name, float(value))
        if ev.get("val_cer") is not None:
            self.val_cer = float(ev["val_cer"])
            self.best_cer = self.val_cer if self.best_cer is None else min(self.best_cer, self.val_cer)
        if ev.get("seconds") is not None:
            self.epoch_seconds.append(float(ev["seconds"]))

    def eta_s(self) -> float | None:
        if not self.epoch_seconds or not self.epochs_total:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return max(0.0, (self.epochs_total - self.epoch) * mean)

    def mean(self, values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None


class EventReader:
    """Turns a byte stream (read in arbitrary chunks) into events; keeps partial lines."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        events = []
        for line in lines:
            text = line.strip()
            if not text.startswith(b"{"):
                continue
            try:
                ev = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict) and "event" in ev:
                events.append(ev)
        return events


def status_line(p: JobProgress, usd_so_far: Decimal) -> str:
    """One line for logs and non-interactive terminals."""
    total = f"/{p.epochs_total}" if p.epochs_total else ""
    cer = "-" if p.val_cer is None else f"{p.val_cer:.3f}"
    best = "-" if p.best_cer is None else f"{p.best_cer:.3f}"
    lps = "-" if p.lines_per_s is None else f"{p.lines_per_s:.0f}"
    eta = p.eta_s()
    eta_text = "-" if eta is None else f"{eta / 60:.0f} min"
    return (f"epoch {p.epoch}{total}  CER {cer} (best {best})  {lps} lines/s  "
            f"{usd(usd_so_far, 4)} so far  ETA {eta_text}")

