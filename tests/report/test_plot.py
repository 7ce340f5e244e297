"""Rent vs owning: the plotted series (hand-computed) and the image files themselves.

Own running cost per rented GPU-hour on an RTX 3060 (speed 1.25, 170 W + 60 W host, 0.30 USD/kWh):
  t4  1.0/1.25 x 0.23 kW x 0.30 = 0.0552;  l4 2.0/1.25 x 0.069 = 0.1104;  a10g 2.2/1.25 x 0.069 = 0.12144
September: 10 h t4 -> 0.552; October: 12 h t4 + 2 h l4 + 8 h a10g -> 0.6624 + 0.2208 + 0.97152 = 1.85472
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import numpy as np
from lxml import etree
from PIL import Image

from launcher.config import Settings
from ledger.book import Ledger
from ledger.ownership import MonthUsage
from ledger.plot import OWN_COLOUR, RENT_COLOUR, ownership_series, render_chart, series_from_ledger


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _pixels_near(img: Image.Image, colour: tuple[int, int, int], tol: int = 12) -> int:
    pixels = np.asarray(img.convert("RGB"), dtype=np.int16)  # (H, W, 3)
    close = (np.abs(pixels - np.array(colour, dtype=np.int16)) <= tol).all(axis=2)
    return int(close.sum())


def test_series_from_ledger_hand_computed(book: Ledger) -> None:
    s = Settings()
    series = series_from_ledger(book, "2026-10", s.card("rtx3060"), s.ownership_params())
    assert series.months == ("2026-09", "2026-10")
    assert series.rent_usd == (D(4), D("13.559589041"))
    assert series.own_usd == (D("329.552"), D("331.40672"))
    assert series.crossover_month is None and series.crossover_usd is None


def test_series_crossover_with_a_cheap_card(book: Ledger) -> None:
    s = Settings()
    cheap = replace(s.card("rtx3060"), price_usd=D(10))
    series = series_from_ledger(book, "2026-10", cheap, s.ownership_params())
    assert series.own_usd == (D("10.552"), D("12.40672"))
    assert (series.crossover_month, series.crossover_usd) == ("2026-10", D("13.559589041"))


def test_pure_series() -> None:
    s = Settings()
    card = replace(s.card("rtx3060"), price_usd=D(100))
    usage = [MonthUsage(f"2026-0{m}", D(40), {"t4": D(100)}) for m in (1, 2, 3, 4)]
    series = ownership_series(usage, card, s.ownership_params())
    # own: 100 + 5.52 per month; rent: 40 per month -> 120 >= 116.56 in March
    assert series.own_usd == (D("105.52"), D("111.04"), D("116.56"), D("122.08"))
    assert series.rent_usd == (D(40), D(80), D(120), D(160))
    assert (series.crossover_month, series.crossover_usd) == ("2026-03", D(120))


def _crossing_series():
    s = Settings()
    card = replace(s.card("rtx3060"), price_usd=D(100))
    usage = [MonthUsage(f"2026-0{m}", D(40), {"t4": D(100)}) for m in range(1, 7)]
    return ownership_series(usage, card, s.ownership_params())


def test_png_shows_both_series_and_the_crossover(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    data = render_chart(_crossing_series(), path)
    assert path.read_bytes() == data and data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(path)
    img.verify()
    img = Image.open(path)
    assert img.size == (800, 450)
    assert _pixels_near(img, _rgb(RENT_COLOUR)) > 500
    assert _pixels_near(img, _rgb(OWN_COLOUR)) > 500
    assert _pixels_near(img, _rgb("#2ca02c")) > 50  # the crossover marker


def test_svg_is_valid_and_has_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "chart.svg"
    render_chart(_crossing_series(), path)
    tree = etree.parse(str(path))
    assert tree.getroot().tag == "{http://www.w3.org/2000/svg}svg"
    styles = " ".join(str(el.get("style") or "") for el in tree.iter())
    assert f"stroke: {RENT_COLOUR}" in styles or f"stroke:{RENT_COLOUR}" in styles
    assert f"stroke: {OWN_COLOUR}" in styles or f"stroke:{OWN_COLOUR}" in styles
    text = path.read_text()
    assert "crossover 2026-03" in text and "Rent vs owning" in text and "cumulative USD" in text


def test_cli_plot_file(sqlite_book: str, tmp_path: Path, cli_on) -> None:
    out = tmp_path / "c.png"
    result = cli_on(sqlite_book)("report", "--month", "2026-10", "--plot", str(out))
    assert result.exit_code == 0, result.stderr
    assert Image.open(out).format == "PNG"
