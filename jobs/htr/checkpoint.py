"""Checkpoints and exported models, written atomically (temporary file + fsync + os.replace).

A checkpoint (RUN/checkpoint.pt) holds everything a run needs to go on exactly where it stopped:
model, optimizer, scheduler and gradient-scaler states, the RNG states of python, numpy and
torch (and CUDA), epoch, step, sampler position, best CER so far and the epoch history.

An exported model (RUN/model.pt) is what inference loads: weights, codec, the model-shape part of
the config and the line height, plus the validation CER it reached.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobs.htr.config import TrainConfig
from jobs.htr.errors import HtrError
from jobs.htr.model import CRNN, MODEL_FORMAT, load_exported

MODEL_VERSION = 1


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save `obj` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch and (when present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by the trainer (it holds RNG states: not weights-only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise HtrError(f"cannot read checkpoint {path}: {exc}",
                       "delete it to start the run afresh, or use another --out") from exc


def export_model(path: Path, model: CRNN, cfg: TrainConfig, codec: list[str], height: int,
                 metrics: dict[str, Any]) -> None:
    """Write the one file inference needs (weights on the CPU, codec, config, height, metrics)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "state_dict": state,
                 "codec": codec, "config": cfg.to_dict(), "height": height, "metrics": metrics}, path)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[CRNN, list[str], TrainConfig]:
    """Load an exported model in eval mode: (model, codec, config) (`jobs.htr.model.load_exported`:
    every way a file can fail to be a model is one HtrError)."""
    return load_exported(path, device)
