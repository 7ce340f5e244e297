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


# ---------------------------------------------------------------- trainer and inference (helper A2)

DIGIT_WIDTH = 16  # px per digit of the easy lines


def draw_digits(text: str, ink: int = 20) -> Image.Image:
    """One clean line of digits in Pillow's built-in font, 32 px high."""
    from PIL import ImageDraw, ImageFont

    img = Image.new("L", (DIGIT_WIDTH * len(text) + 12, 32), 255)
    ImageDraw.Draw(img).text((6, 3), text, fill=ink, font=ImageFont.load_default(size=22))
    return img


def write_digit_pairs(out: Path, n: int, seed: int) -> Path:
    """`n` image + .gt.txt pairs of 3-8 random digits: a task a tiny CRNN learns in a minute."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        text = "".join(rng.choice(list("0123456789"), size=int(rng.integers(3, 9))))
        draw_digits(text, int(rng.integers(0, 60))).save(out / f"l{k:04d}.png")
        (out / f"l{k:04d}.gt.txt").write_text(text + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def digits_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 digit lines compiled at 32 px (seed 0, 10 % validation). Read-only."""
    root = tmp_path_factory.mktemp("digits")
    write_digit_pairs(root / "gt", 300, 0)
    compile_dataset([root / "gt"], root / "ds", height=32, seed=0)
    return root / "ds"


@pytest.fixture(scope="session")
def learned_run(digits_ds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained on `digits_ds` for 8 epochs (events in RUN/events.jsonl). Read-only."""
    from jobs.htr.config import load_config
    from jobs.htr.events import EventWriter
    from jobs.htr.train import train

    run = tmp_path_factory.mktemp("learned") / "run"
    cfg = load_config("tiny", epochs=8, patience=20, min_epochs=8)
    events = EventWriter("learned", run / "events.jsonl")
    train(digits_ds, run, cfg, events=events)
    events.close()
    return run
