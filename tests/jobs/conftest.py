"""Fixtures for the HTR jobs: synthetic ground truth and a compiled dataset (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.htr.dataset import CompiledDataset, compile_dataset
from jobs.htr.synth import synth

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def synth_gt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 synthetic lines (60 on PAGE pages, 60 as pairs), seed 7. Read-only: copy before changing."""
    out = tmp_path_factory.mktemp("synth") / "gt"
    synth(out, 120, 7)
    return out


@pytest.fixture(scope="session")
def compiled_synth(synth_gt: Path, tmp_path_factory: pytest.TempPathFactory) -> CompiledDataset:
    """`synth_gt` compiled at 64 px, seed 0 (10 % validation). Read-only."""
    out = tmp_path_factory.mktemp("compiled") / "ds"
    compile_dataset([synth_gt], out, height=64, seed=0)
    return CompiledDataset(out)
