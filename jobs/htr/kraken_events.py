"""The lightning callback that turns a kraken training run into gpuhire's events and checkpoints.

Imported only after `load_kraken()` (it subclasses lightning's Callback). The events are those
of the CRNN engine (jobs/htr/events.py, events.schema.json); what the callback keeps across a
resume (best CER, the epoch history) travels inside kraken's checkpoint as the callback's state.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from jobs.htr.events import EventWriter
from jobs.htr.hardware import gpu_stats
from jobs.htr.interrupt import Signals
from jobs.htr.kraken_config import KrakenConfig


class SignalStop(Exception):  # noqa: N818 - a stop, not an error
    """Raised inside trainer.fit once a SIGTERM/SIGINT was seen (after the checkpoint is written)."""


def _metric(trainer: Any, name: str) -> float | None:
    value = trainer.callback_metrics.get(name)
    return None if value is None else float(value)


class EventCallback(Callback):
    """start / progress / epoch / checkpoint events; last.ckpt and best.ckpt; stop on a signal."""

    def __init__(self, events: EventWriter, signals: Signals, cfg: KrakenConfig, run: Path,
                 manifest: dict[str, Any], device: str, precision: str) -> None:
        self.events, self.signals, self.cfg, self.run = events, signals, cfg, run
        self.manifest, self.device, self.precision = manifest, device, precision
        self.best_cer: float | None = None
        self.best_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.parameters = 0
        self.signal_checkpoint: Path | None = None
        self._last_checkpoint = time.monotonic()
        self._last_progress = 0.0
        self._reset_epoch()

    # ------------------------------------------------------------ state kept in kraken's checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"best_cer": self.best_cer, "best_epoch": self.best_epoch, "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_cer = state_dict.get("best_cer")
        self.best_epoch = int(state_dict.get("best_epoch", 0))
        self.history = list(state_dict.get("history", []))

    # ------------------------------------------------------------ checkpoints

    def save(self, trainer: Any, name: str, reason: str | None) -> Path:
        """kraken's checkpoint (trainer.save_checkpoint) written atomically to RUN/checkpoints/NAME."""
        folder = self.run / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path, tmp = folder / name, folder / f".{name}.partial"
        trainer.save_checkpoint(str(tmp))
        os.replace(tmp, path)
        if reason is not None:
            self._last_checkpoint = time.monotonic()
            self.events.emit("checkpoint", path=str(path), epoch=int(trainer.current_epoch) + 1,
                             step=int(trainer.global_step), reason=reason)
        return path

    def _stop_if_signalled(self) -> None:
        if self.signals.received is not None:
            raise SignalStop(self.signals.received)

    # ------------------------------------------------------------ hooks

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.parameters = sum(p.numel() for p in pl_module.net.parameters())
        step = int(trainer.global_step)
        resumed = step > 0 or bool(self.history)
        self.events.emit("start", device=self.device, precision=self.precision, parameters=self.parameters,
                         lines=int(self.manifest.get("lines", 0)),
                         val_lines=int(self.manifest.get("val_lines", 0)),
                         epochs=self.cfg.epochs, world_size=1, resumed_from_step=step if resumed else None,
                         engine="kraken", batch_size=self.cfg.batch_size, spec=self.cfg.spec)
        self._stop_if_signalled()

    def _reset_epoch(self) -> None:
        self._started = self._batch_end = time.monotonic()
        self._train_seconds: float | None = None
        self._lines = self._steps = 0
        self._loss = 0.0
        self._wait = 0.0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._reset_epoch()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._wait += time.monotonic() - self._batch_end
        self._stop_if_signalled()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = self._batch_end = time.monotonic()
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._lines += int(batch["image"].shape[0])
        self._steps += 1
        self._loss += float(loss) if loss is not None else 0.0
        self._stop_if_signalled()
        if now - self._last_checkpoint >= self.cfg.checkpoint_minutes * 60:
            self.save(trainer, "last.ckpt", "timer")
        if now - self._last_progress >= self.cfg.progress_seconds:
            self._last_progress = now
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            fields: dict[str, Any] = {"lr": float(lr)} if lr is not None else {}
            self.events.emit("progress", epoch=int(trainer.current_epoch) + 1, step=int(trainer.global_step),
                             loss=round(self._loss / max(1, self._steps), 4),
                             lines_per_s=round(self._lines / max(now - self._started, 1e-9), 2),
                             gpu_util=gpu_stats(pl_module.device)[0], **fields)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._train_seconds = time.monotonic() - self._started

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        seconds = self._train_seconds if self._train_seconds is not None else time.monotonic() - self._started
        acc, word_acc = _metric(trainer, "val_accuracy"), _metric(trainer, "val_word_accuracy")
        cer = None if acc is None else round(max(0.0, 1.0 - acc), 6)
        wer = None if word_acc is None else round(max(0.0, 1.0 - word_acc), 6)
        epoch = int(trainer.current_epoch) + 1
        improved = cer is not None and (self.best_cer is None or cer < self.best_cer)
        if improved:
            self.best_cer, self.best_epoch = cer, epoch
        util, mem = gpu_stats(pl_module.device)
        record = {"epoch": epoch, "step": int(trainer.global_step),
                  "train_loss": round(self._loss / self._steps, 5) if self._steps else None,
                  "val_cer": cer, "val_wer": wer, "lines_per_s": round(self._lines / max(seconds, 1e-9), 2),
                  "data_wait_fraction": round(min(1.0, self._wait / max(seconds, 1e-9)), 4),
                  "gpu_util": util, "gpu_mem_gb": mem, "seconds": round(seconds, 3),
                  "best_val_cer": self.best_cer}
        self.history.append(record)
        self.events.emit("epoch", **record)
        if improved:
            self.save(trainer, "best.ckpt", None)
        self.save(trainer, "last.ckpt", "epoch")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        """A signal (our SignalStop, or lightning's own SIGTERM exit): one checkpoint where it is."""
        if self.signals.received is not None and self.signal_checkpoint is None:
            self.signal_checkpoint = self.save(trainer, "last.ckpt", "signal")
