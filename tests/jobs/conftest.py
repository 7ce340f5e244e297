"""Fixtures for the HTR jobs: synthetic ground truth and a compiled dataset (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

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


def ink_page(width: int, height: int) -> Image.Image:
    """A grey page with a regular dark 'ink' pattern, so that every crop holds ink and paper."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.where((x // 7 + y // 11) % 3 == 0, 20, 230).astype(np.uint8))


# Images the hand-written XML fixtures under fixtures/gt refer to: (path, width, height).
GT_IMAGES = (
    ("page2013/page_2013.png", 600, 400),
    ("transkribus/page_2019.jpg", 500, 300),  # the XML is in transkribus/page/, as Transkribus exports
    ("alto/alto_v2.tif", 700, 300),
    ("alto/alto_v4.png", 640, 320),
    ("pairs/l001.png", 320, 48),
    ("pairs/l002.bin.png", 280, 40),
    ("pairs/l004.png", 200, 40),
)


@pytest.fixture
def gt_tree(tmp_path: Path) -> Path:
    """A copy of fixtures/gt (PAGE 2013 + 2019, ALTO v2 + v4, pairs) with its images drawn."""
    import shutil

    root = tmp_path / "gt"
    shutil.copytree(FIXTURES / "gt", root)
    for rel, width, height in GT_IMAGES:
        ink_page(width, height).save(root / rel)
    return root


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    """A copy of fixtures/bad: broken XML, METS, a missing and an unreadable page image."""
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(FIXTURES / "bad", root)
    return root
