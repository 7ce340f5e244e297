"""The kraken engine's configuration: the `[kraken]` table of a preset file, then the flags.

    cfg = load_kraken_config("kraken", epochs=20)        # presets/kraken.toml, then overrides
    cfg = load_kraken_config(Path("mine.toml"))           # a file of your own with a [kraken] table

Unknown keys and values of the wrong type are rejected, as for the CRNN presets. The fields
map onto kraken 7's `VGSLRecognitionTrainingConfig` / `VGSLRecognitionTrainingDataConfig`
(`ketos train` options in brackets).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from jobs.htr.config import PRESETS_DIR, ConfigError

__all__ = ["DEFAULT_SPEC", "ConfigError", "KrakenConfig", "kraken_from_dict", "load_kraken_config"]

# kraken 7.1.1's default recognition network (VGSLRecognitionTrainingConfig.spec), ~4 M parameters.
DEFAULT_SPEC = ("[1,120,0,1 Cr3,13,32 Do0.1,2 Mp2,2 Cr3,13,32 Do0.1,2 Mp2,2 Cr3,9,64 Do0.1,2 Mp2,2 "
                "Cr3,9,64 Do0.1,2 S1(1x0)1,3 Lbx200 Do0.1,2 Lbx200 Do0.1,2 Lbx200 Do]")


@dataclass(frozen=True)
class KrakenConfig:
    """Everything a kraken-engine run depends on besides the data. Defaults = presets/kraken.toml."""

    spec: str = DEFAULT_SPEC  # VGSL network spec without the output layer [--spec]
    batch_size: int = 0  # lines per batch [-B]; 0 = auto: 1 on a CPU (kraken's default; measured
    # 2.9 lines/s with batches of 1 against 1.1 with 16 on one core: padding costs more than it saves),
    # 16 on a GPU
    lr: float = 1e-3  # learning rate [--lrate]
    optimizer: str = "AdamW"  # [--optimizer]: Adam, AdamW, SGD, RMSprop
    weight_decay: float = 0.0  # [--weight-decay]
    schedule: str = "constant"  # [--schedule]: constant, 1cycle, exponential, step, reduceonplateau, cosine
    warmup: int = 0  # linear warm-up steps [--warmup]
    augment: bool = False  # kraken's image augmentation [--augment]
    padding: int = 16  # blank px left and right of each line [--pad]
    epochs: int = 50  # upper bound [-N]; early stopping usually ends sooner
    early_stopping: bool = True  # [--quit early|fixed]
    min_epochs: int = 5  # no early stop before this epoch [--min-epochs]
    lag: int = 10  # validation runs without improvement before early stop [--lag]
    val_fraction: float = 0.1  # seeded validation share when DATA is ground truth
    normalization: str = "NFC"  # Unicode normalisation of transcriptions [-u]
    workers: int = -1  # DataLoader worker processes; -1 = auto: none on a CPU (they would compete with
    # the one training thread), min(4, CPUs - 1) on a GPU (kraken dewarps every line while loading)
    cpu_threads: int = 0  # torch threads on a CPU; 0 = physical cores
    checkpoint_minutes: float = 10.0  # write RUN/checkpoints/last.ckpt at least this often
    progress_seconds: float = 10.0  # a `progress` event at most this often
    seed: int = 0  # seed of the split and of torch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCHEDULES = ("constant", "1cycle", "exponential", "step", "reduceonplateau", "cosine")
OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop")


def _check(cfg: KrakenConfig) -> None:
    problems = []
    spec = cfg.spec.strip()
    if not (spec.startswith("[") and spec.endswith("]")) or len(spec.split()) < 2:
        problems.append(f"spec {cfg.spec!r} is not a bracketed VGSL spec like '[1,120,0,1 Cr3,3,32 ...]'")
    if cfg.workers < -1:
        problems.append("workers must be -1 (auto), 0 or more")
    if cfg.batch_size < 0 or cfg.epochs < 1 or cfg.lag < 1 or cfg.min_epochs < 0 or cfg.warmup < 0:
        problems.append("epochs and lag must be at least 1, batch_size (0 = auto), min_epochs and warmup "
                        "0 or more")
    if cfg.lr <= 0 or cfg.checkpoint_minutes <= 0 or cfg.progress_seconds < 0 or cfg.padding < 0:
        problems.append("lr and checkpoint_minutes must be positive, padding and progress_seconds 0 or more")
    if not 0 <= cfg.val_fraction < 1:
        problems.append("val_fraction must be in [0, 1)")
    if cfg.schedule not in SCHEDULES:
        problems.append(f"schedule must be one of {', '.join(SCHEDULES)}")
    if cfg.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
    if problems:
        raise ConfigError("bad kraken config: " + "; ".join(problems),
                          "fix the preset's [kraken] table or the flags")


def _type_ok(kind: str, value: object) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value))
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, str)


def kraken_from_dict(data: dict[str, Any], base: KrakenConfig | None = None,
                     source: str = "config") -> KrakenConfig:
    """Overlay `data` on `base`; unknown keys and wrong types are a ConfigError."""
    kinds = {f.name: str(f.type) for f in fields(KrakenConfig)}
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        named = ", ".join(k if k.isprintable() else repr(k) for k in unknown)
        raise ConfigError(f"unknown key(s) in the [kraken] table of {source}: {named}",
                          f"use only: {', '.join(sorted(kinds))}")
    wrong = [f"{k} = {v!r}"[:80] for k, v in data.items() if not _type_ok(kinds[k], v)]
    if wrong:
        raise ConfigError(f"bad value in the [kraken] table of {source}: {'; '.join(wrong)}",
                          "compare with jobs/htr/presets/kraken.toml")
    cfg = replace(base or KrakenConfig(), **data)
    _check(cfg)
    return cfg


def load_kraken_config(preset: str | Path = "kraken", **overrides: Any) -> KrakenConfig:
    """`kraken` (presets/kraken.toml) or a TOML file with a `[kraken]` table, then `overrides`
    (None = keep the preset's value)."""
    path = Path(preset) if str(preset).endswith(".toml") else PRESETS_DIR / f"{preset}.toml"
    if not path.is_file() or (path.parent == PRESETS_DIR and path.stem != "kraken"):
        raise ConfigError(f"no kraken preset or config file {preset!r}",
                          "use --preset kraken or the path of a .toml file with a [kraken] table")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", "fix the TOML syntax") from exc
    table = data.get("kraken")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [kraken] table",
                          "put the kraken engine's keys under [kraken] (see jobs/htr/presets/kraken.toml)")
    cfg = kraken_from_dict(table, source=str(path))
    given = {k: v for k, v in overrides.items() if v is not None}
    return kraken_from_dict(given, cfg, source="the flags") if given else cfg
