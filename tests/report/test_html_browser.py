"""The HTML report in a real headless Chromium: it renders, and the screenshot shows the chart."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launcher.config import Settings
from ledger.book import Ledger
from ledger.plot import OWN_COLOUR, RENT_COLOUR, render_chart, series_from_ledger
from ledger.report import build_report
from ledger.report_formats import render_html


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: scripts/test-services must install it in CI")
    pytest.skip("chromium not installed (apt-get install chromium)")


def _count(img: Image.Image, hex_colour: str, tol: int = 14) -> int:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    pixels = np.asarray(img.convert("RGB"), dtype=np.int16)
    return int((np.abs(pixels - target) <= tol).all(axis=2).sum())


@pytest.mark.slow
def test_html_report_renders_with_chart(sqlite_book: str, tmp_path: Path) -> None:
    from ledger.db import open_engine

    browser = _chromium()
    book = Ledger(open_engine(sqlite_book))
    s = Settings()
    card = replace(s.card("rtx3060"), price_usd=D(10))  # crosses in October
    report = build_report(book, "2026-10", card, s.ownership_params())
    chart = render_chart(series_from_ledger(book, "2026-10", card, s.ownership_params()))
    page = tmp_path / "report.html"
    page.write_text(render_html(report, chart), encoding="utf-8")
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={shot}",
           "--window-size=1200,1600", "--hide-scrollbars", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert shot.exists(), done.stderr[-2000:]
    img = Image.open(shot)
    assert img.size == (1200, 1600)
    white = _count(img, "#ffffff", tol=3)
    assert white < 1200 * 1600  # something was drawn
    assert _count(img, RENT_COLOUR) > 300, "the rent line is not on screen"
    assert _count(img, OWN_COLOUR) > 300, "the owning line is not on screen"
    dark = int((np.asarray(img.convert("L")) < 80).sum())
    assert dark > 2000  # the tables' text rendered too
