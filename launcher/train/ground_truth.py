"""The ground truth and the preset of a train job, checked with the trainer's own readers before
anything is rented: a bad file or preset stops `gpuhire train` here, with one line."""

from __future__ import annotations

import json
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
    if len(inputs) == 1 and kraken_dataset_lines(inputs[0]) is not None:
        raise SpecError(f"{inputs[0]} is a dataset compiled for the kraken engine",
                        "train it with --engine kraken, or give the ground truth itself")
    try:
        report = compile_dataset(inputs, out)
    except GroundTruthError as exc:
        fix = f"{exc.fix}; nothing was rented" if exc.fix else "nothing was rented"
        raise SpecError(f"ground truth unusable: {exc.message}", fix) from None
    summary = getattr(report, "summary", None)
    if callable(summary):
        say(summary())
    return len(CompiledDataset(out))


def kraken_dataset_lines(path: Path) -> int | None:
    """The training lines of a compiled kraken dataset (`manifest.json` with engine kraken, as
    `python -m jobs.htr compile --engine kraken` writes it); None when `path` is none."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("engine") != "kraken":
        return None
    lines = manifest.get("lines")
    return lines if isinstance(lines, int) and not isinstance(lines, bool) else 0


MAX_PROBLEMS_SAID = 5


def check_kraken_ground_truth(inputs: list[Path], preset: str = "kraken", spec: str | None = None) -> None:
    """Ground truth kraken cannot take (jobs.htr.kraken_train.kraken_problems: empty lines,
    text kraken's normalisation changes, lines too short for the network's pooling, with the
    job's own spec and padding) stops the job here, before anything is rented: one line naming
    the first problems and how many."""
    from jobs.htr.errors import HtrError
    from jobs.htr.gt import GtReport, iter_samples
    from jobs.htr.kraken_config import load_kraken_config
    from jobs.htr.kraken_train import kraken_problems

    try:
        cfg = load_kraken_config(preset, spec=spec)
        samples = iter_samples(inputs, normalization=cfg.normalization, report=GtReport())
        problems = kraken_problems(samples, cfg.spec, cfg.padding, cfg.normalization)
    except HtrError as exc:
        fix = f"{exc.fix}; nothing was rented" if exc.fix else "nothing was rented"
        raise SpecError(f"ground truth unusable for kraken: {exc.message}", fix) from None
    if problems:
        more = len(problems) - MAX_PROBLEMS_SAID
        said = "; ".join(problems[:MAX_PROBLEMS_SAID]) + (f"; and {more} more" if more > 0 else "")
        raise SpecError(f"ground truth kraken cannot train on ({len(problems)} problem(s)): {said}",
                        "fix or leave out those lines; nothing was rented")


def compile_kraken_ground_truth(inputs: list[Path], out: Path, preset: str = "kraken",
                                spec: str | None = None, say: Callable[[str], None] = _to_stderr) -> int:
    """Check the ground truth for kraken and compile it once into kraken's binary (arrow)
    dataset with the trainer's own compile (jobs/htr/kraken_data.py, kraken's
    build_binary_dataset); return the training line count. A compiled kraken dataset is taken
    as it is; a dataset compiled for the CRNN is refused."""
    from jobs.htr.dataset import is_compiled_dataset
    from jobs.htr.errors import HtrError
    from jobs.htr.kraken_config import load_kraken_config
    from jobs.htr.kraken_data import compile_kraken

    if len(inputs) == 1:
        lines = kraken_dataset_lines(inputs[0])
        if lines is not None:
            shutil.copytree(inputs[0], out, dirs_exist_ok=True)
            return lines
        if is_compiled_dataset(inputs[0]):
            raise SpecError(f"{inputs[0]} is a dataset compiled for the crnn engine",
                            "give the ground truth itself (PAGE, ALTO, image + .gt.txt) with "
                            "--engine kraken, or train it with --engine crnn")
    check_kraken_ground_truth(inputs, preset, spec)
    try:
        cfg = load_kraken_config(preset, spec=spec)
        manifest = compile_kraken(inputs, out, val_fraction=cfg.val_fraction, seed=cfg.seed,
                                  spec=cfg.spec, padding=cfg.padding, normalization=cfg.normalization)
    except HtrError as exc:
        fix = f"{exc.fix}; nothing was rented" if exc.fix else "nothing was rented"
        raise SpecError(f"ground truth unusable for kraken: {exc.message}", fix) from None
    say(f"compiled {manifest['lines'] + manifest['val_lines']} lines ({manifest['lines']} train, "
        f"{manifest['val_lines']} validation) into kraken's binary dataset, "
        f"{len(manifest['charset'])} characters")
    return int(manifest["lines"])


def checked_preset(preset: str, where: str) -> str:
    """A preset the trainer ships, or the full path of an existing .toml file of the user's
    own, loaded with the trainer's own reader: a bad one stops here, before anything is rented."""
    from jobs.htr.config import PRESETS, PRESETS_DIR, load_config
    from jobs.htr.config import ConfigError as PresetError

    shipped = sorted((p.stem for p in PRESETS_DIR.glob("*.toml") if p.stem != "kraken"),  # the other engine's
                     key=lambda n: (PRESETS.index(n) if n in PRESETS else len(PRESETS), n))
    choices = f"use one of {', '.join(shipped)}, or the path of a .toml file of your own"
    if preset == "kraken":
        raise InputError(f"{where}: 'kraken' is the kraken engine's preset",
                         "add --engine kraken, or " + choices)
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
