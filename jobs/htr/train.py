"""Train a CRNN line recogniser: `python -m jobs.htr train DATA --out RUN` or `train(...)`.

One run directory holds everything: RUN/dataset (when DATA is ground truth), RUN/checkpoint.pt
(written every cfg.checkpoint_minutes, at each epoch's end and on SIGTERM), RUN/model.pt (the
best model so far, what inference loads) and RUN/metrics.json. Start the same command again and
it resumes from RUN/checkpoint.pt at the step it stopped (the `start` event says from which).

SIGTERM (the spot notice) is caught from the very start, compile and batch-size probe included
(jobs/htr/interrupt.py): the run stops with a checkpoint when there is a model to save, exit 143.

Under torchrun each process trains on its share of the batches (DDP; gloo on CPU, NCCL on GPUs);
rank 0 writes the events, checkpoints and the model; the run ends the process group it started
(jobs/htr/ddp.py). A SIGTERM to any rank stops every rank at the same step (ddp.agree) and rank 0
writes the one checkpoint; a checkpoint resumes under any number of processes. Under DDP the
`epoch` event's gpu_util is the mean over every rank's GPU, and data_wait_by_rank lists each
rank's data-wait fraction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from jobs.htr import ddp
from jobs.htr.checkpoint import (
    atomic_save,
    export_model,
    load_checkpoint,
    load_model,
    rng_state,
    set_rng_state,
)
from jobs.htr.config import TrainConfig, from_dict
from jobs.htr.data import make_loader, prepare_dataset, worker_count
from jobs.htr.dataset import CompiledDataset
from jobs.htr.errors import HtrError
from jobs.htr.events import EventWriter
from jobs.htr.hardware import (
    autocast_dtype,
    gpu_stats,
    nvml_utilization,
    pick_device,
    pick_precision,
    set_cpu_threads,
)
from jobs.htr.interrupt import Interrupted, Signals, catching
from jobs.htr.model import CRNN, count_parameters, extend_codec
from jobs.htr.probe import fit_batch_pixels
from jobs.htr.sampler import BucketBatchSampler, batch_cap
from jobs.htr.validate import validate


@dataclass
class TrainResult:
    """How a run ended."""

    run: Path
    model: Path
    best_val_cer: float | None
    epochs: int  # epochs completed
    step: int  # optimizer steps taken
    stopped: str  # "epochs", "early-stopping" or "interrupted"
    weights_sha256: str = ""  # of the final weights on this rank (DDP ranks agree)


@dataclass
class State:
    """What moves on during a run (all of it goes into the checkpoint)."""

    epoch: int = 1  # the epoch in progress (1-based)
    position: int = 0  # micro-batches of this epoch already trained on
    step: int = 0  # optimizer steps
    best_cer: float | None = None
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Ctx:
    """The pieces of a run that `train_epoch` and friends share."""

    cfg: TrainConfig
    run: Path
    data: CompiledDataset
    codec: list[str]
    model: CRNN
    net: nn.Module  # the model, wrapped in DDP under torchrun
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: BucketBatchSampler
    loader: Any
    device: torch.device
    precision: str
    events: EventWriter
    rank: int = 0
    world: int = 1
    signals: Signals = field(default_factory=Signals)  # what the SIGTERM/SIGINT handler saw
    last_checkpoint: float = field(default_factory=time.monotonic)


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """The warm-up in optimizer steps: cfg.warmup_steps, but at most cfg.warmup_epochs epochs of
    steps (when set), so that a small set does not spend its first epochs barely learning."""
    if cfg.warmup_epochs <= 0:
        return cfg.warmup_steps
    return max(1, min(cfg.warmup_steps, math.ceil(cfg.warmup_epochs * steps_per_epoch)))


def lr_lambda(cfg: TrainConfig, total_steps: int, warmup: int | None = None) -> Any:
    """Linear warm-up to cfg.lr over `warmup` steps (default cfg.warmup_steps), then cosine decay
    to cfg.lr_min_ratio x cfg.lr at total_steps."""
    warm = cfg.warmup_steps if warmup is None else max(1, warmup)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        done = min(1.0, (step - warm) / max(1, total_steps - warm))
        return cfg.lr_min_ratio + (1 - cfg.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * done))
    return f


def _model_and_codec(cfg: TrainConfig, data: CompiledDataset, init: Path | None,
                     ckpt: dict[str, Any] | None) -> tuple[TrainConfig, CRNN, list[str]]:
    """The model to train: from the checkpoint (resume), from --init (fine-tuning) or new.

    The model's shape comes from where its weights come from; the rest of `cfg` applies as given.
    """
    if ckpt is not None:
        cfg = replace(cfg, **from_dict(ckpt["config"]).model_dict())
        model = CRNN(cfg, data.height, len(ckpt["codec"]) + 1)
        model.load_state_dict(ckpt["model"])
        return cfg, model, list(ckpt["codec"])
    if init is None:
        return cfg, CRNN(cfg, data.height, len(data.codec) + 1), list(data.codec)
    model, codec, init_cfg = load_model(init)
    if model.height != data.height:
        raise HtrError(f"--init model reads {model.height} px lines, the dataset has {data.height} px",
                       f"compile the ground truth at --height {model.height}")
    cfg = replace(cfg, **init_cfg.model_dict())
    return cfg, model, extend_codec(model, codec, data.codec)


def _batch_pixels(cfg: TrainConfig, model: CRNN, data: CompiledDataset, device: torch.device, precision: str,
                  world: int, memory_pixels: int | None) -> int:
    """cfg.batch_pixels, or on CUDA (or a simulated memory limit) what the probe found to fit."""
    if not ((cfg.probe_batch and device.type == "cuda") or memory_pixels is not None):
        return cfg.batch_pixels
    widest = int(data.widths[data.train_ids].max()) if len(data.train_ids) else 1
    budget = fit_batch_pixels(model, device, precision, data.height, widest, cfg.batch_pixels,
                              cfg.max_batch, memory_pixels=memory_pixels)
    budget = ddp.smallest(budget, device, world)  # every rank takes the smallest budget that fit
    if device.type == "cuda":  # the epochs' gpu_mem_gb is training's peak, not the probe's
        torch.cuda.reset_peak_memory_stats(device)
    return budget


def setup(data_path: Path, run: Path, cfg: TrainConfig, events: EventWriter, init: Path | None,
          device_name: str, memory_pixels: int | None, signals: Signals,
          group: ddp.Group) -> tuple[Ctx, State]:
    """Everything before the first step: data, model, optimizer, loader, and a resume if there is one.

    A signal raises Interrupted until the model is built; from then on it is recorded in `signals`.
    """
    rank, world = group.rank, group.world
    device = pick_device(device_name, group.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        set_cpu_threads(world, cfg.cpu_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    barrier = torch.distributed.barrier if world > 1 else None
    data = prepare_dataset(data_path, run, cfg, rank=rank, barrier=barrier)
    ckpt_path = run / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    cfg, model, codec = _model_and_codec(cfg, data, init, ckpt)
    model.to(device)
    signals.raise_now = False  # from here a checkpoint can be written: a signal only stops the run
    precision = pick_precision(device)
    batch_pixels = (ckpt["batch_pixels"] if ckpt
                    else _batch_pixels(cfg, model, data, device, precision, world, memory_pixels))
    # the batch policy as the run started: a resume under another --gpus keeps the same batches
    max_batch = (int(ckpt.get("max_batch", cfg.max_batch)) if ckpt
                 else batch_cap(cfg.max_batch, len(data.train_ids),
                                 cfg.min_steps_per_epoch * cfg.accum_steps, world))
    sampler = BucketBatchSampler(data.train_ids, data.widths, data.height, batch_pixels, max_batch,
                                 seed=cfg.seed, rank=rank, world_size=world)
    if len(sampler) == 0:
        raise HtrError(f"no training batch for {world} process(es): {len(data.train_ids)} training lines",
                       "give more ground truth or fewer processes")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(sampler) / cfg.accum_steps)  # optimizer steps
    # a checkpoint from before the warm-up cap (no max_batch in it) keeps its old warm-up: the
    # learning-rate schedule is not saved, so a resume mid-warm-up must compute the same one
    warmup = cfg.warmup_steps if ckpt and "max_batch" not in ckpt else warmup_steps(cfg, per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, cfg.epochs * per_epoch, warmup))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    net: nn.Module = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    loader = make_loader(data, codec, sampler, worker_count(cfg, world), pin=device.type == "cuda")
    ctx = Ctx(cfg, run, data, codec, model, net, opt, sched, scaler, sampler, loader, device, precision,
              events, rank, world, signals)
    state = State()
    if ckpt:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        state = State(**ckpt["state"])
        # written by another number of processes (another --gpus): the same place in the epoch
        state.position = ddp.rescale_position(state.position, int(ckpt.get("world", 1)), world)
        set_rng_state(ckpt["rng"])
    events.emit("start", device=str(device), precision=precision,
                parameters=count_parameters(model), lines=len(data.train_ids), val_lines=len(data.val_ids),
                epochs=cfg.epochs, world_size=world, batch_pixels=batch_pixels, max_batch=max_batch,
                warmup_steps=warmup, resumed_from_step=state.step if ckpt else None, engine="crnn")
    return ctx, state


def save_checkpoint(ctx: Ctx, state: State, reason: str) -> Path:
    """Rank 0 writes RUN/checkpoint.pt atomically and emits a `checkpoint` event."""
    path = ctx.run / "checkpoint.pt"
    ctx.last_checkpoint = time.monotonic()
    if ctx.rank != 0:
        return path
    saved = dict(state.__dict__)
    atomic_save({"model": ctx.model.state_dict(), "optimizer": ctx.opt.state_dict(),
                 "scheduler": ctx.sched.state_dict(), "scaler": ctx.scaler.state_dict(),
                 "rng": rng_state(), "state": saved, "codec": ctx.codec, "config": ctx.cfg.to_dict(),
                 "batch_pixels": ctx.sampler.batch_pixels, "max_batch": ctx.sampler.max_batch,
                 "world": ctx.world}, path)
    ctx.events.emit("checkpoint", path=str(path), epoch=state.epoch, step=state.step, reason=reason)
    return path


def train_step(ctx: Ctx, batch: Any, last_micro: bool) -> torch.Tensor:
    """Forward and backward of one micro-batch; the optimizer step on the last of `accum_steps`."""
    images, targets, lengths, widths, _ = batch
    images = images.to(ctx.device, non_blocking=True)
    dtype = autocast_dtype(ctx.precision)
    sync = nullcontext() if last_micro or ctx.world == 1 else ctx.net.no_sync()  # type: ignore[operator]
    with sync:
        with torch.autocast(ctx.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            log_probs = ctx.net(images)  # (T, B, C) float32
        frames = ctx.model.frames(widths.to(ctx.device))
        loss = F.ctc_loss(log_probs, targets.to(ctx.device), frames, lengths.to(ctx.device),
                          blank=0, reduction="mean", zero_infinity=True)
        ctx.scaler.scale(loss / ctx.cfg.accum_steps).backward()
    if last_micro:
        ctx.scaler.unscale_(ctx.opt)
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.cfg.grad_clip)
        ctx.scaler.step(ctx.opt)
        ctx.scaler.update()
        ctx.opt.zero_grad(set_to_none=True)
        ctx.sched.step()
    return loss.detach()


def train_epoch(ctx: Ctx, state: State) -> dict[str, float] | None:
    """One pass over this rank's batches from state.position; None when stopped by a signal."""
    ctx.net.train()
    ctx.sampler.set_position(state.epoch, state.position)
    loss_sum = torch.zeros((), device=ctx.device)
    steps = lines = 0
    wait = 0.0
    started = last_progress = time.monotonic()
    n_batches = len(ctx.sampler)
    batches = iter(ctx.loader)
    while True:
        t0 = time.monotonic()
        batch = next(batches, None)
        wait += time.monotonic() - t0
        if batch is None:
            break
        state.position += 1
        last_micro = state.position % ctx.cfg.accum_steps == 0 or state.position == n_batches
        loss_sum += train_step(ctx, batch, last_micro)
        steps, lines = steps + 1, lines + len(batch[4])
        state.step += int(last_micro)
        now = time.monotonic()
        if not last_micro:
            continue
        timer_due = now - ctx.last_checkpoint >= ctx.cfg.checkpoint_minutes * 60
        stop, timer_due = ddp.agree(ctx.device, ctx.world, ctx.signals.received is not None, timer_due)
        if stop:
            return None
        if timer_due:
            save_checkpoint(ctx, state, "timer")
        if ctx.rank == 0 and now - last_progress >= ctx.cfg.progress_seconds:
            last_progress = now
            ctx.events.emit("progress", epoch=state.epoch, step=state.step,
                            loss=round(float(loss_sum) / max(steps, 1), 4),
                            lines_per_s=round(lines * ctx.world / (now - started), 2),
                            lr=ctx.sched.get_last_lr()[0],
                            gpu_util=_box_util(ctx))  # the launcher's idle-GPU alert
    seconds = time.monotonic() - started
    return {"train_loss": float(loss_sum) / max(steps, 1), "seconds": seconds,
            "lines_per_s": lines * ctx.world / max(seconds, 1e-9),
            "data_wait_fraction": min(1.0, wait / max(seconds, 1e-9))}


def _box_util(ctx: Ctx) -> float | None:
    """GPU utilisation for the idle-GPU figures: this GPU's, or under torchrun on GPUs the mean
    over every GPU of the box (rank 0 reads them all through NVML: an idle GPU among four is
    idle dollars too)."""
    if ctx.world == 1 or ctx.device.type != "cuda":
        return gpu_stats(ctx.device)[0]
    utils = [nvml_utilization(torch.device("cuda", i)) for i in range(torch.cuda.device_count())]
    known = [u for u in utils if u is not None]
    return sum(known) / len(known) if known else None


def _over_ranks(ctx: Ctx, value: float | None) -> list[float | None]:
    """Every rank's `value` (None where a rank has none); all ranks call it together."""
    got = ddp.each(-1.0 if value is None else value, ctx.rank, ctx.device, ctx.world)
    return [None if v < 0 else v for v in got]


def _weights_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def end_epoch(ctx: Ctx, state: State, stats: dict[str, float]) -> bool:
    """Validate, emit `epoch`, keep the best model, checkpoint; True when early stopping says stop."""
    cer, wer = validate(ctx.model, ctx.data, ctx.codec, ctx.device, ctx.precision, ctx.sampler.batch_pixels,
                        ctx.cfg.max_batch, ctx.rank, ctx.world)
    improved = cer is not None and (state.best_cer is None or cer < state.best_cer)
    if improved or (cer is None):
        state.best_cer, state.best_epoch = cer, state.epoch
    util, mem = gpu_stats(ctx.device)
    waits: list[float | None] = [stats["data_wait_fraction"]]
    if ctx.world > 1:  # every rank's GPU counts (mean), and every rank's wait for data
        utils = [u for u in _over_ranks(ctx, util) if u is not None]
        util = round(sum(utils) / len(utils), 4) if utils else None
        waits = _over_ranks(ctx, stats["data_wait_fraction"])
    record: dict[str, Any] = {"epoch": state.epoch, "step": state.step,
              "train_loss": round(stats["train_loss"], 5),
              "val_cer": cer, "val_wer": wer, "lines_per_s": round(stats["lines_per_s"], 2),
              "data_wait_fraction": round(stats["data_wait_fraction"], 4), "gpu_util": util,
              "gpu_mem_gb": mem, "seconds": round(stats["seconds"], 3), "best_val_cer": state.best_cer}
    if ctx.world > 1:
        record["data_wait_by_rank"] = [None if w is None else round(w, 4) for w in waits]
    state.history.append(record)
    if ctx.rank == 0:
        ctx.events.emit("epoch", **record)
        if improved or cer is None:
            export_model(ctx.run / "model.pt", ctx.model, ctx.cfg, ctx.codec, ctx.data.height,
                         {"val_cer": cer, "val_wer": wer, "epoch": state.epoch, "step": state.step})
    patience_over = state.epoch - state.best_epoch >= ctx.cfg.patience
    stop = cer is not None and state.epoch >= ctx.cfg.min_epochs and patience_over
    state.epoch, state.position = state.epoch + 1, 0
    save_checkpoint(ctx, state, "epoch")
    return stop


def write_metrics(ctx: Ctx, state: State, stopped: str) -> Path:
    """RUN/metrics.json: best CER, the epoch history and the run's means (rank 0)."""
    path = ctx.run / "metrics.json"
    hist = state.history
    mean = (lambda k: sum(h[k] for h in hist) / len(hist) if hist else None)  # noqa: E731
    metrics = {"best_val_cer": state.best_cer, "best_epoch": state.best_epoch, "epochs": len(hist),
               "step": state.step, "stopped": stopped, "device": str(ctx.device), "precision": ctx.precision,
               "parameters": count_parameters(ctx.model), "world_size": ctx.world,
               "train_lines": len(ctx.data.train_ids), "val_lines": len(ctx.data.val_ids),
               "lines_per_s": mean("lines_per_s"), "data_wait_fraction": mean("data_wait_fraction"),
               "config": ctx.cfg.to_dict(), "history": hist}
    if ctx.rank == 0:
        tmp = path.with_name(".metrics.json.tmp")
        tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return path


def _interrupt(ctx: Ctx, state: State) -> None:
    """A signal stopped the run: checkpoint where it is, then `interrupted` (rank 0)."""
    path = save_checkpoint(ctx, state, "signal")
    if ctx.rank == 0:
        ctx.events.emit("interrupted", signal=ctx.signals.received or "SIGTERM", checkpoint=str(path),
                        step=state.step)


def _interrupted_in_setup(run: Path, events: EventWriter, signals: Signals) -> TrainResult:
    """A signal before the model existed: nothing new to save; an earlier checkpoint still stands."""
    path = run / "checkpoint.pt"
    step = int(load_checkpoint(path)["state"]["step"]) if path.exists() else 0
    events.emit("interrupted", signal=signals.received or "SIGTERM",
                checkpoint=str(path) if path.exists() else None, step=step)
    return TrainResult(run, run / "model.pt", None, 0, step, "interrupted")


def run_epochs(ctx: Ctx, state: State) -> str:
    """Train until the epochs are done, early stopping or a signal; returns how it stopped."""
    if ddp.agree(ctx.device, ctx.world, ctx.signals.received is not None)[0]:  # during the probe, say
        _interrupt(ctx, state)
        return "interrupted"
    while state.epoch <= ctx.cfg.epochs:
        stats = train_epoch(ctx, state)
        if stats is None:
            _interrupt(ctx, state)
            return "interrupted"
        if end_epoch(ctx, state, stats):
            return "early-stopping"
    return "epochs"


def train(data: Path, run: Path, cfg: TrainConfig, *, events: EventWriter | None = None,
          init: Path | None = None, device: str = "auto", memory_pixels: int | None = None) -> TrainResult:
    """Train (or resume) into `run`; see the module doc. `memory_pixels` simulates a device that
    runs out of memory above that many pixels per batch (tests of the batch-size probe).

    SIGTERM/SIGINT are caught from the start, compile and probe included (jobs/htr/interrupt.py):
    the result is then `stopped="interrupted"`, after a checkpoint whenever one could be written.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    events = events or EventWriter(run.name)
    signals = Signals()
    group: ddp.Group | None = None
    clean = False
    try:
        with catching(signals):
            group = ddp.start(device)
            ctx, state = setup(Path(data), run, cfg, events, init, device, memory_pixels, signals, group)
            stopped = run_epochs(ctx, state)
        result = _finish(ctx, state, stopped)
        clean = True
        return result
    except Interrupted:
        return _interrupted_in_setup(run, events, signals)
    finally:
        ddp.leave(group, clean)


def _finish(ctx: Ctx, state: State, stopped: str) -> TrainResult:
    """metrics.json and the `done` event, unless interrupted; how the run ended."""
    if stopped != "interrupted":
        metrics = write_metrics(ctx, state, stopped)
        if ctx.rank == 0:
            ctx.events.emit("done", best_val_cer=state.best_cer, model=str(ctx.run / "model.pt"),
                            metrics=str(metrics), epochs=len(state.history), step=state.step, stopped=stopped)
    return TrainResult(ctx.run, ctx.run / "model.pt", state.best_cer, len(state.history), state.step, stopped,
                       _weights_sha256(ctx.model))
