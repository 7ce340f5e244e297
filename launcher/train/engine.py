"""The training engine of a job: `crnn` (gpuhire's own trainer) or `kraken` (kraken's recognition
trainer through its Python API, jobs/htr/kraken_train.py). The launcher treats both alike (one
event stream, one run folder); what differs is checked and named here: the preset, kraken's
network spec, the trainer's flags, the size the quote looks throughput up by, and the model
files a finished run brings home."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

from launcher.errors import InputError

ENGINES = ("crnn", "kraken")
KRAKEN_PRESET = "kraken"  # the kraken engine's shipped preset (kraken's default model)
# What a finished run leaves in its run folder, per engine: the CRNN's own file; kraken 7's
# default format (safetensors) and the CoreML model eScriptorium accepts.
MODEL_FILES: dict[str, tuple[str, ...]] = {
    "crnn": ("model.pt",),
    "kraken": ("model.safetensors", "model.mlmodel"),
}
MAX_SPEC_CHARS = 2000


def check_engine(engine: str, where: str = "--engine") -> str:
    """`crnn` or `kraken` (any case); one line naming both otherwise."""
    name = engine.strip().lower()
    if name not in ENGINES:
        raise InputError(f"{where} {engine!r} is not a training engine", "use --engine crnn or kraken")
    return name


def check_kraken_spec(spec: str, where: str = "--kraken-spec") -> str:
    """A VGSL network spec as kraken reads it: `[1,120,0,1 Cr3,13,32 ... Lbx200 Do]` (one line,
    in brackets; kraken itself checks the layers when the job starts)."""
    text = spec.strip()
    if not text.startswith("[") or not text.endswith("]") or len(text) < 3:
        raise InputError(f"{where} {spec!r} is not a VGSL spec",
                         "write it in brackets, e.g. --kraken-spec '[1,120,0,1 Cr3,13,32 Mp2,2 "
                         "Lbx200 Do]' (see kraken's VGSL docs)")
    if "\n" in text or "\r" in text or len(text) > MAX_SPEC_CHARS:
        raise InputError(f"{where}: the spec must be one line of at most {MAX_SPEC_CHARS} characters",
                         "give the VGSL spec on one line")
    return text


def kraken_table(preset: str) -> dict[str, Any]:
    """The `[kraken]` table of a preset .toml file ({} for a preset name or a file without one)."""
    if not preset.endswith(".toml"):
        return {}
    try:
        data = tomllib.loads(Path(preset).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    table = data.get("kraken")
    return table if isinstance(table, dict) else {}


def checked_kraken_preset(preset: str | None, where: str) -> str:
    """The kraken engine's preset: `kraken` (also when none is given), or the full path of a
    .toml file of the user's own with a `[kraken]` table; a CRNN preset name is refused."""
    from jobs.htr.config import PRESETS

    if preset is None or preset == KRAKEN_PRESET:
        return KRAKEN_PRESET
    fix = "use --preset kraken, or the path of a .toml file with a [kraken] table (docs/trainer.md)"
    if not preset.endswith(".toml"):
        if preset in PRESETS:
            raise InputError(f"{where}: {preset!r} is a preset of the crnn engine", fix)
        raise InputError(f"{where}: {preset!r} is not a kraken preset", fix)
    path = Path(preset).expanduser()
    if not path.is_file():
        raise InputError(f"{where}: no file {preset}", fix)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: cannot read {preset}: not UTF-8 text (byte {exc.start})", fix) from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read {preset}: {exc.strerror}", fix) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where}: {preset} is not TOML ({exc})", fix) from None
    table = data.get("kraken")
    if not isinstance(table, dict):
        raise InputError(f"{where}: {preset} has no [kraken] table", fix)
    spec = table.get("spec")
    if spec is not None:
        if not isinstance(spec, str):
            raise InputError(f"{where}: [kraken] spec in {preset} is not a string", fix)
        check_kraken_spec(spec, f"{where}: [kraken] spec in {preset}:")
    _trainer_check(str(path.resolve()), where)
    return str(path.resolve())


def _trainer_check(preset: str, where: str) -> None:
    """The kraken trainer's own reading of a preset file (jobs/htr/kraken_config.py): unknown
    keys and bad values stop here, before anything is rented."""
    from jobs.htr.errors import HtrError
    from jobs.htr.kraken_config import load_kraken_config

    try:
        load_kraken_config(preset)
    except HtrError as exc:
        raise InputError(f"{where}: {exc.message}", exc.fix) from None


def preset_epochs(preset: str, engine: str) -> int | None:
    """The epochs a .toml preset file sets itself: its `[kraken]` table's for kraken, its
    top-level `epochs` for the CRNN (None: it sets none)."""
    if not preset.endswith(".toml"):
        return None
    if engine == "kraken":
        epochs = kraken_table(preset).get("epochs")
    else:
        try:
            epochs = tomllib.loads(Path(preset).read_text(encoding="utf-8")).get("epochs")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None  # checked already
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None


def kraken_spec_of(preset: str, spec: str | None) -> str | None:
    """The network spec a kraken job trains: `--kraken-spec`, else its preset file's, else None
    (kraken's default model)."""
    if spec:
        return spec
    value = kraken_table(preset).get("spec")
    return value.strip() if isinstance(value, str) and value.strip() else None


def kraken_model_size(preset: str, spec: str | None) -> str:
    """The size the quote looks a kraken job's throughput up by: `kraken` for kraken's default
    model, `kraken spec <hash>` for a network spec of the user's own (the same spec, the same size)."""
    from jobs.htr.kraken_config import DEFAULT_SPEC

    used = kraken_spec_of(preset, spec)
    if used is None or " ".join(used.split()) == " ".join(DEFAULT_SPEC.split()):
        return "kraken"
    digest = hashlib.sha256(" ".join(used.split()).encode()).hexdigest()[:10]
    return f"kraken spec {digest}"


def engine_args(engine: str, spec: str | None) -> list[str]:
    """The trainer's flags for the engine (`python -m jobs.htr train ...`); none for the CRNN."""
    if engine != "kraken":
        return []
    return ["--engine", "kraken", *(["--kraken-spec", spec] if spec else [])]


def model_files(engine: str) -> tuple[str, ...]:
    """The model files a finished run of `engine` leaves in its run folder."""
    return MODEL_FILES.get(engine, MODEL_FILES["crnn"])
