"""Properties: the seeded split, point parsing and the write-back round trip for any text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.htr.formats import parse_points, parse_xml
from jobs.htr.gt import normalize_text
from jobs.htr.split import seeded_split
from jobs.htr.writeback import write_alto_text, write_page_text, xml_safe

FIXTURES = Path(__file__).parent / "fixtures" / "gt"
keys = st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=60, unique=True)


@given(keys, st.floats(0.0, 0.9), st.integers(0, 2**32))
def test_seeded_split_is_a_deterministic_order_free_partition(names: list[str], fraction: float,
                                                               seed: int) -> None:
    train, val = seeded_split(names, fraction, seed)
    assert sorted(train + val) == list(range(len(names))) and not set(train) & set(val)
    assert (train, val) == seeded_split(names, fraction, seed)
    reordered = list(reversed(names))
    _, val_r = seeded_split(reordered, fraction, seed)
    assert {names[i] for i in val} == {reordered[i] for i in val_r}
    if fraction > 0 and len(names) > 1:
        assert 1 <= len(val) < len(names)


@given(st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, 10**5)), min_size=1, max_size=20))
def test_points_parse_in_page_and_alto_spelling(points: list[tuple[int, int]]) -> None:
    page = " ".join(f"{x},{y}" for x, y in points)
    alto = " ".join(f"{x} {y}" for x, y in points)
    assert parse_points(page) == parse_points(alto) == tuple((float(x), float(y)) for x, y in points)


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=40, deadline=None)
@given(texts)
def test_page_write_back_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    folder = tmp_path_factory.mktemp("rt")
    xml = folder / "page.xml"
    shutil.copy(FIXTURES / "transkribus" / "page" / "page_2019.xml", xml)
    write_page_text(xml, {"tl_3": text}, xml)
    line = {ln.line_id: ln for ln in parse_xml(xml).lines}["tl_3"]
    # a carriage return is whitespace like any other: it reads back as one space (XML parsers
    # turn a raw CR into a line feed), never glued to its neighbours
    assert normalize_text(line.text or "", "none") == normalize_text(xml_safe(text), "none")


@settings(max_examples=40, deadline=None)
@given(texts)
def test_alto_write_back_round_trips_any_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    folder = tmp_path_factory.mktemp("rt")
    xml = folder / "alto.xml"
    shutil.copy(FIXTURES / "alto" / "alto_v4.xml", xml)
    write_alto_text(xml, {"line_2": text}, xml)
    line = {ln.line_id: ln for ln in parse_xml(xml).lines}["line_2"]
    assert line.text == " ".join(xml_safe(text).split())
