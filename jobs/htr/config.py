"""The trainer's configuration: one frozen dataclass, every field commented, presets in TOML.

    cfg = load_config("default", epochs=20)          # presets/default.toml, then overrides
    cfg = load_config(Path("my.toml"))                # a file of your own, same keys

Unknown keys are rejected (a typo never silently trains something else). The model-shape
fields (`height` is the dataset's) travel inside every checkpoint and exported model.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from jobs.htr.errors import HtrError

PRESETS_DIR = Path(__file__).parent / "presets"
PRESETS = ("tiny", "small", "default", "large")
MODEL_FIELDS = ("channels", "width_pools", "lstm_hidden", "lstm_layers", "dropout")


class ConfigError(HtrError):
    """A preset or config file that cannot be used."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides the data. Defaults = the `default` preset."""

    # --- model (CRNN: conv blocks -> BiLSTM -> CTC) ---
    channels: tuple[int, ...] = (32, 64, 128, 256)  # channels of each conv block (each halves the height)
    width_pools: int = 2  # the first N blocks also halve the width: one CTC frame per 2**N px
    lstm_hidden: int = 256  # hidden units per direction of each BiLSTM layer
    lstm_layers: int = 3  # stacked BiLSTM layers (3 x 256 ~ kraken/PyLaia size)
    dropout: float = 0.2  # dropout between LSTM layers and before the output layer
    # --- data ---
    height: int = 64  # line height in px when DATA is ground truth (compiled datasets keep theirs)
    normalization: str = "NFC"  # Unicode normalisation of transcriptions when compiling
    val_fraction: float = 0.1  # seeded validation share when compiling (split files override it)
    batch_pixels: int = 4_000_000  # pixel budget of one batch (lines x height x padded width)
    max_batch: int = 64  # at most this many lines in a batch, however narrow
    min_steps_per_epoch: int = 100  # small sets: fewer lines per batch so that an epoch has at least this
    # many optimizer steps per process (never under 4 lines a batch); 0 = the pixel budget alone
    workers: int = -1  # DataLoader worker processes; -1 = min(4, CPUs per process - 1)
    cpu_threads: int = 0  # torch threads on a CPU; 0 = physical cores / processes (busy shared CPUs: 1)
    # --- optimisation ---
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    lr: float = 1e-3  # peak AdamW learning rate, reached after warm-up
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 200  # linear warm-up, then cosine decay to lr_min_ratio x lr ...
    warmup_epochs: float = 1.0  # ... but no longer than this many epochs of steps (small sets); 0 = off
    lr_min_ratio: float = 0.05  # the floor of the cosine decay, as a share of lr
    blank_bias: float = 3.0  # initial bias of the output layer's CTC blank (the others start at 0)
    grad_clip: float = 5.0  # clip the global gradient norm (LSTMs with CTC spike early on)
    accum_steps: int = 1  # micro-batches per optimizer step (bigger effective batch, same memory)
    # --- stopping ---
    patience: int = 8  # stop after this many epochs without a better validation CER ...
    min_epochs: int = 5  # ... but never before this many epochs
    # --- run ---
    seed: int = 0  # seeds python, numpy and torch; the batch order follows it
    checkpoint_minutes: float = 10.0  # write a checkpoint at least this often (and on SIGTERM)
    progress_seconds: float = 5.0  # emit a `progress` event at most this often
    probe_batch: bool = True  # on CUDA: shrink batch_pixels until a widest-line batch fits in memory

    def model_dict(self) -> dict[str, Any]:
        """The fields that decide the model's shape (stored with checkpoints and models)."""
        return {name: getattr(self, name) for name in MODEL_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists): JSON- and TOML-friendly."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _check(cfg: TrainConfig) -> None:
    problems = []
    if not cfg.channels or any(c < 1 for c in cfg.channels):
        problems.append("channels must be a non-empty list of positive integers")
    if not 0 <= cfg.width_pools <= len(cfg.channels):
        problems.append("width_pools must be between 0 and the number of conv blocks")
    if cfg.height < 2 ** len(cfg.channels):
        problems.append(f"height {cfg.height} must be at least 2**len(channels) (each block halves it)")
    for name in ("lstm_hidden", "lstm_layers", "batch_pixels", "max_batch", "epochs", "accum_steps"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1")
    if cfg.min_steps_per_epoch < 0 or cfg.warmup_epochs < 0 or cfg.warmup_steps < 1:
        problems.append("min_steps_per_epoch and warmup_epochs must be 0 or more, warmup_steps at least 1")
    if not 0 <= cfg.dropout < 1 or cfg.lr <= 0 or cfg.checkpoint_minutes <= 0:
        problems.append("dropout must be in [0, 1), lr and checkpoint_minutes positive")
    if problems:
        raise ConfigError("bad training config: " + "; ".join(problems), "fix the preset or the flags")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_problem(name: str, kind: str, value: object) -> str | None:
    """Why `value` cannot be the field `name` of type `kind` (as annotated); None when it can."""
    if kind == "int":
        ok = _is_int(value)
        want = "a whole number"
    elif kind == "float":
        ok = (_is_int(value) and abs(value) < 2**53) or (isinstance(value, float) and math.isfinite(value))
        want = "a finite number"
    elif kind == "bool":
        ok, want = isinstance(value, bool), "true or false"
    elif kind == "str":
        ok, want = isinstance(value, str), "a string"
    else:  # tuple[int, ...]
        ok = isinstance(value, list | tuple) and all(_is_int(v) for v in value)
        want = "a list of whole numbers"
    return None if ok else f"{name} must be {want}, not {value!r}"[:200]


def from_dict(data: dict[str, Any], base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """Overlay `data` on `base` (default: the built-in defaults); unknown keys are an error,
    and so is a value of the wrong type (`epochs = "many"`, `lr = true`)."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        named = ", ".join(k if k.isprintable() else repr(k) for k in unknown)  # one line, always
        raise ConfigError(f"unknown key(s) in {source}: {named}",
                          f"use only: {', '.join(sorted(known))}")
    kinds = {f.name: str(f.type) for f in fields(TrainConfig)}
    wrong = [p for k, v in data.items() if (p := _type_problem(k, kinds[k], v)) is not None]
    if wrong:
        raise ConfigError(f"bad value in {source}: {'; '.join(wrong)}",
                          "compare with jobs/htr/presets/default.toml")
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        cfg = replace(base or TrainConfig(), **clean)
    except TypeError as exc:
        raise ConfigError(f"bad value in {source}: {exc}",
                          "compare with jobs/htr/presets/default.toml") from exc
    _check(cfg)
    return cfg


def load_config(preset: str | Path = "default", **overrides: Any) -> TrainConfig:
    """A preset name (tiny/small/default/large) or a TOML file, then `overrides` (None = keep)."""
    path = Path(preset) if str(preset).endswith(".toml") else PRESETS_DIR / f"{preset}.toml"
    if not path.is_file():
        raise ConfigError(f"no preset or config file {preset!r}",
                          f"use one of {', '.join(PRESETS)} or the path of a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text (byte {exc.start})",
                          "save it as a UTF-8 TOML file") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "fix the TOML syntax") from exc
    cfg = from_dict(data, source=str(path.name))
    given = {k: v for k, v in overrides.items() if v is not None}
    return from_dict(given, base=cfg, source="flags") if given else cfg
