"""The trainer image carries the kraken engine (issue 16, deliverable 4), checked without a
Docker daemon as tests/jobs/test_image.py checks the rest: kraken pinned as pyproject's `kraken`
extra pins it, kraken's own pins for what jobs/ imports of its dependencies, the kraken preset
and trainer in the build context, and the trainer's `--engine kraken` usable from exactly what
the image copies."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from tests.jobs.test_image import ROOT, _context_files, _pip_pins


def _kraken_requirement(name: str) -> str | None:
    """kraken's own `==` pin of `name` (its wheel's metadata), if it pins one."""
    for req in importlib.metadata.requires("kraken") or []:
        m = re.fullmatch(rf"{name}==([\w.]+)", req.split(";")[0].strip())
        if m:
            return m.group(1)
    return None


def test_the_image_pins_kraken_as_pyproject_and_its_dependencies_as_kraken() -> None:
    pins = _pip_pins()
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["kraken"]
    (wanted,) = [r.split("==")[1] for r in extra if r.startswith("kraken==")]
    assert pins["kraken"] == wanted == importlib.metadata.version("kraken")
    assert pins["lightning"] == _kraken_requirement("lightning")  # kraken's pin, not another
    assert "torch" not in pins and "torchvision" not in pins  # the base image's CUDA builds stay


def test_the_kraken_engine_is_in_the_build_context() -> None:
    context = _context_files()
    assert {"jobs/htr/kraken_train.py", "jobs/htr/kraken_data.py", "jobs/htr/kraken_config.py",
            "jobs/htr/presets/kraken.toml"} <= context


def test_train_engine_kraken_runs_from_what_the_image_copies(tmp_path: Path) -> None:
    app = tmp_path / "app"  # /app in the image: jobs/ from the context, nothing of launcher/
    for rel in sorted(f for f in _context_files() if f.startswith("jobs/")):
        target = app / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / rel).read_bytes())
    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(app), *sorted(packages)])}
    done = subprocess.run([sys.executable, "-S", "-m", "jobs.htr", "train", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--engine" in done.stdout and "--kraken-spec" in done.stdout
    code = ("from jobs.htr.kraken_train import kraken_problems, train_kraken\n"
            "from jobs.htr.kraken_config import load_kraken_config\n"
            "print(load_kraken_config('kraken').epochs)\n")
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()
