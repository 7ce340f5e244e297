"""Train with kraken's own recognition trainer: `python -m jobs.htr train DATA --out RUN --engine kraken`.

kraken 7's Python API does the training (its `VGSLRecognitionModel` lightning module, its data
module over the binary dataset jobs/htr/kraken_data.py compiled, its `KrakenTrainer`), as
`ketos train` wires them; a lightning callback (jobs/htr/kraken_events.py) turns the run into
gpuhire's event stream (`start`, `progress`, `epoch` with val CER/WER and lines/s, `checkpoint`,
`interrupted`, `done`) and writes the checkpoints:

    RUN/dataset/            kraken's binary dataset, when DATA is ground truth
    RUN/checkpoints/last.ckpt   kraken's own checkpoint: every epoch, every checkpoint_minutes, on a signal
    RUN/checkpoints/best.ckpt   the best validation CER so far
    RUN/model.safetensors   the best model, kraken 7's default format   } with metadata: codec, best CER,
    RUN/model.mlmodel       the same as CoreML (what eScriptorium loads) } training lines, gpuhire job
    RUN/metrics.json

An existing RUN resumes from RUN/checkpoints/last.ckpt with the exact training state (kraken 7
`--resume`). SIGTERM/SIGINT (jobs/htr/interrupt.py): one checkpoint, an `interrupted` event and
exit status EXIT_INTERRUPTED; before the model exists the run just stops.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jobs.htr.errors import HtrError
from jobs.htr.events import EventWriter
from jobs.htr.hardware import pick_device, pick_precision, set_cpu_threads
from jobs.htr.interrupt import Interrupted, Signals, catching
from jobs.htr.kraken_config import KrakenConfig
from jobs.htr.kraken_data import compile_kraken, is_kraken_dataset, kraken_problems, read_manifest

__all__ = ["KrakenResult", "export_models", "kraken_problems", "train_kraken"]  # kraken_problems: the
# launcher's import point for the ground-truth check

LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
MODEL_FILES = ("model.safetensors", "model.mlmodel")
GPU_BATCH = 16  # batch_size = 0 (auto) on a GPU


@dataclass
class KrakenResult:
    """How a kraken-engine run ended."""

    run: Path
    model: Path  # RUN/model.safetensors
    models: list[Path] = field(default_factory=list)
    best_val_cer: float | None = None
    epochs: int = 0  # epochs completed
    step: int = 0  # optimizer steps
    stopped: str = "epochs"  # "epochs", "early-stopping" or "interrupted"


def _quiet() -> None:
    """lightning's tips and kraken's deprecation notes off stderr; stdout holds only events."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in (".*logger=True.*", ".*pin_memory.*", ".*LeafSpec.*", ".*save_model.*deprecated.*",
                    ".*does not have many workers.*", ".*Checkpoint directory.*", ".*num_workers.*"):
        warnings.filterwarnings("ignore", message=pattern)


def dataset_for(data: Path, run: Path, cfg: KrakenConfig) -> tuple[Path, dict[str, Any]]:
    """The compiled kraken dataset to train on: DATA itself, RUN/dataset from an earlier start,
    or DATA (ground truth) compiled into RUN/dataset now."""
    if is_kraken_dataset(data):
        return data, read_manifest(data)
    if (data / "meta.json").is_file() and not is_kraken_dataset(data):
        raise HtrError(f"{data} is a dataset compiled for the CRNN engine",
                       "compile the ground truth with --engine kraken, or give the ground truth itself")
    target = run / "dataset"
    if is_kraken_dataset(target):
        return target, read_manifest(target)
    manifest = compile_kraken([data], target, val_fraction=cfg.val_fraction, seed=cfg.seed, spec=cfg.spec,
                              padding=cfg.padding, normalization=cfg.normalization)
    return target, manifest


def _configs(cfg: KrakenConfig, dataset: Path, run: Path, fine_tune: bool) -> tuple[Any, Any]:
    from kraken.configs import VGSLRecognitionTrainingConfig, VGSLRecognitionTrainingDataConfig

    data_cfg = VGSLRecognitionTrainingDataConfig(
        training_data=[str(dataset / "train.arrow")], evaluation_data=[str(dataset / "val.arrow")],
        format_type="binary", partition=1, num_workers=cfg.workers, batch_size=cfg.batch_size,
        augment=cfg.augment, padding=cfg.padding)
    model_cfg = VGSLRecognitionTrainingConfig(
        spec=cfg.spec, batch_size=cfg.batch_size, lrate=cfg.lr, optimizer=cfg.optimizer,
        weight_decay=cfg.weight_decay, schedule=cfg.schedule, warmup=cfg.warmup, epochs=cfg.epochs,
        quit="early" if cfg.early_stopping else "fixed", min_epochs=cfg.min_epochs, lag=cfg.lag,
        checkpoint_path=str(run / "checkpoints"), resize="union" if fine_tune else "fail")
    return data_cfg, model_cfg


def load_init(module_cls: Any, init: Path, model_cfg: Any) -> Any:
    """The lightning module around the kraken recognition model in `init` (fine-tuning)."""
    if not Path(init).is_file():
        raise HtrError(f"--init {init} does not exist",
                       "give a kraken recognition model (.safetensors or .mlmodel)")
    try:
        return module_cls.load_from_weights(str(init), config=model_cfg)
    except Exception as exc:  # kraken raises many kinds for a file that is no model of its own
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "recognition" in text and "found" in text:
            raise HtrError(f"--init {init} holds no kraken recognition model (a segmentation model?)",
                           "give a kraken recognition model, e.g. a .safetensors or .mlmodel from ketos train"
                           ) from exc
        raise HtrError(f"--init {init} is not a kraken model kraken 7 can load ({text})",
                       "give a kraken recognition model (.safetensors or .mlmodel)") from exc


def train_kraken(data: Path, run: Path, cfg: KrakenConfig, *, events: EventWriter | None = None,
                 init: Path | None = None, device: str = "auto", job: str | None = None) -> KrakenResult:
    """Train (or resume) with kraken into `run`; see the module doc."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    events = events or EventWriter(run.name)
    signals = Signals()
    try:
        with catching(signals):
            return _train(Path(data), run, cfg, events, init, device, job or events.job, signals)
    except Interrupted:
        last = run / "checkpoints" / "last.ckpt"
        events.emit("interrupted", signal=signals.received or "SIGTERM",
                    checkpoint=str(last) if last.exists() else None, step=_checkpoint_step(last))
        return KrakenResult(run, run / MODEL_FILES[0], stopped="interrupted", step=_checkpoint_step(last))


def _checkpoint_step(path: Path) -> int:
    if not path.exists():
        return 0
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))


def _train(data: Path, run: Path, cfg: KrakenConfig, events: EventWriter, init: Path | None,
           device_name: str, job: str, signals: Signals) -> KrakenResult:
    import torch

    dataset, manifest = dataset_for(data, run, cfg)
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    _quiet()
    from kraken.train import KrakenTrainer, VGSLRecognitionDataModule, VGSLRecognitionModel
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from jobs.htr.kraken_events import EventCallback, SignalStop

    dev = pick_device(device_name)
    precision = pick_precision(dev)
    if dev.type == "cpu":
        set_cpu_threads(1, cfg.cpu_threads)
    torch.manual_seed(cfg.seed)
    if cfg.batch_size == 0:
        cfg = replace(cfg, batch_size=GPU_BATCH if dev.type == "cuda" else 1)
    if cfg.workers < 0:
        cfg = replace(cfg, workers=min(4, (os.cpu_count() or 1) - 1) if dev.type == "cuda" else 0)
    last = run / "checkpoints" / "last.ckpt"
    resume = last if last.is_file() else None
    data_cfg, model_cfg = _configs(cfg, dataset, run, fine_tune=init is not None)
    callback = EventCallback(events, signals, cfg, run, manifest, str(dev), precision)
    trainer = KrakenTrainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=[dev.index or 0] if dev.type == "cuda" else 1,
        precision=LIGHTNING_PRECISION[precision], max_epochs=cfg.epochs,
        min_epochs=min(cfg.min_epochs, cfg.epochs), enable_progress_bar=False, enable_summary=False,
        enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, val_check_interval=1.0,
        gradient_clip_val=model_cfg.gradient_clip_val, callbacks=[callback], default_root_dir=str(run))
    with trainer.init_module(empty_init=not (init or resume)):
        if resume is not None:
            model = VGSLRecognitionModel.load_from_checkpoint(str(resume), config=model_cfg,
                                                              weights_only=False)
        elif init is not None:
            model = load_init(VGSLRecognitionModel, init, model_cfg)
        else:
            model = VGSLRecognitionModel(model_cfg)
    data_module = VGSLRecognitionDataModule(data_cfg)
    signals.raise_now = False  # from here a signal stops the run at the next step, with a checkpoint
    try:
        trainer.fit(model, data_module, ckpt_path=str(resume) if resume else None)
    except (SignalStop, SIGTERMException):
        events.emit("interrupted", signal=signals.received or "SIGTERM",
                    checkpoint=str(callback.signal_checkpoint) if callback.signal_checkpoint else None,
                    step=int(trainer.global_step))
        return KrakenResult(run, run / MODEL_FILES[0], best_val_cer=callback.best_cer,
                            epochs=len(callback.history), step=int(trainer.global_step),
                            stopped="interrupted")
    except ValueError as exc:
        if "alphabets mismatch" in str(exc):
            raise HtrError(f"the data has characters the --init model lacks ({str(exc)[:120]})",
                           "fine-tuning adds them itself; resume with the same --init, or start a new RUN"
                           ) from exc
        raise
    epochs_done = int(trainer.current_epoch)
    stopped = "epochs" if epochs_done >= cfg.epochs else "early-stopping"
    return _finish(run, callback, stopped, int(trainer.global_step), job, manifest)


def export_models(run: Path, checkpoint: Path, metadata: dict[str, Any]) -> list[Path]:
    """RUN/model.safetensors and RUN/model.mlmodel from a kraken checkpoint, with `metadata` under
    the model's user metadata key `gpuhire` (kraken keeps it in both formats)."""
    from kraken.models.convert import load_from_checkpoint
    from kraken.models.writers import write_coreml, write_safetensors

    net = load_from_checkpoint(checkpoint).net
    net.user_metadata["gpuhire"] = metadata
    out = []
    for name, writer in zip(MODEL_FILES, (write_safetensors, write_coreml), strict=True):
        target, tmp = run / name, run / f".partial.{name}"
        tmp.unlink(missing_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            written = Path(writer([net], tmp))
        os.replace(written, target)
        out.append(target)
    return out


def _finish(run: Path, cb: Any, stopped: str, step: int, job: str, manifest: dict[str, Any]) -> KrakenResult:
    best = run / "checkpoints" / "best.ckpt"
    source = best if best.is_file() else run / "checkpoints" / "last.ckpt"
    if not source.is_file():
        raise HtrError(f"the run ended without a checkpoint in {run / 'checkpoints'}",
                       "train for at least one epoch (--epochs 1 or more)")
    metadata = {"engine": "kraken", "job": job, "best_val_cer": cb.best_cer, "best_epoch": cb.best_epoch,
                "training_lines": int(manifest.get("lines", 0)),
                "validation_lines": int(manifest.get("val_lines", 0)), "step": step}
    models = export_models(run, source, metadata)
    hist = cb.history
    mean = (sum(h["lines_per_s"] for h in hist) / len(hist)) if hist else None
    metrics = {"engine": "kraken", "best_val_cer": cb.best_cer, "best_epoch": cb.best_epoch,
               "epochs": len(hist), "step": step, "stopped": stopped, "device": cb.device,
               "precision": cb.precision,
               "parameters": cb.parameters, "train_lines": metadata["training_lines"],
               "val_lines": metadata["validation_lines"], "lines_per_s": mean,
               "models": [str(m) for m in models], "config": cb.cfg.to_dict(), "history": hist}
    path = run / "metrics.json"
    tmp = run / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    cb.events.emit("done", best_val_cer=cb.best_cer, model=str(models[0]), models=[str(m) for m in models],
                   metrics=str(path), epochs=len(hist), step=step, stopped=stopped)
    return KrakenResult(run, models[0], models, cb.best_cer, len(hist), step, stopped)
