"""The ground truth and the preset of a train job, checked with the trainer's own readers before
anything is rented: a bad file or preset stops `gpuhire train` here, with one line."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from launcher.errors import InputError, SpecError


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def compile_ground_truth(inputs: list[Path], out: Path, say: Callable[[str], None] = _to_stderr) -> int:
    """Compile the ground truth with the trainer's own readers; return the usable line count."""
    from jobs.htr.dataset import CompiledDataset, compile_dataset, is_compiled_dataset
    from jobs.htr.errors import GroundTruthError

    if len(inputs) == 1 and is_compiled_dataset(inputs[0]):  # already compiled
        shutil.copytree(inputs[0], out, dirs_exist_ok=True)
        return len(CompiledDataset(out))
    try:
        report = compile_dataset(inputs, out)
    except GroundTruthError as exc:
        fix = f"{exc.fix}; nothing was rented" if exc.fix else "nothing was rented"
        raise SpecError(f"ground truth unusable: {exc.message}", fix) from None
    summary = getattr(report, "summary", None)
    if callable(summary):
        say(summary())
    return len(CompiledDataset(out))


def checked_preset(preset: str, where: str) -> str:
    """A preset the trainer ships, or the full path of an existing .toml file of the user's
    own, loaded with the trainer's own reader: a bad one stops here, before anything is rented."""
    from jobs.htr.config import PRESETS, PRESETS_DIR, load_config
    from jobs.htr.config import ConfigError as PresetError

    shipped = sorted((p.stem for p in PRESETS_DIR.glob("*.toml")),
                     key=lambda n: (PRESETS.index(n) if n in PRESETS else len(PRESETS), n))
    choices = f"use one of {', '.join(shipped)}, or the path of a .toml file of your own"
    if preset.endswith(".toml"):
        path = Path(preset).expanduser()
        if not path.is_file():
            raise InputError(f"{where}: no file {preset}", choices)
        preset = str(path.resolve())
    elif preset not in shipped:
        raise InputError(f"{where}: {preset!r} is not a trainer preset", choices)
    try:
        load_config(preset)
    except PresetError as exc:
        raise InputError(f"{where}: {exc.message}", exc.fix) from None
    return preset
