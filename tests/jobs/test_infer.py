"""Inference: text written back into the right PAGE lines (the file still parses), plain text,
bare line images, the int8 path, the progress callback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import draw_digits
from lxml import etree
from PIL import Image
from rapidfuzz.distance import Levenshtein

from jobs.htr.errors import HtrError
from jobs.htr.infer import InferProgress, recognise

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
TRUTH = {"tl_a": "31415926", "tl_b": "2718", "tl_c": "1414213"}


def _page(folder: Path) -> Path:
    """A page of three digit lines at known places; tl_b already holds a (wrong) transcription."""
    folder.mkdir(parents=True, exist_ok=True)
    page = Image.new("L", (400, 200), 255)
    lines = []
    for k, (line_id, text) in enumerate(TRUTH.items()):
        img = draw_digits(text)
        x, y = 20 + 10 * k, 20 + 55 * k
        page.paste(img, (x, y))
        w, h = img.size
        equiv = "<TextEquiv index=\"0\"><Unicode>old text</Unicode></TextEquiv>" if line_id == "tl_b" else ""
        lines.append(f'<TextLine id="{line_id}"><Coords points="{x},{y} {x + w},{y} {x + w},{y + h} {x},{y + h}"/>'
                     f"{equiv}</TextLine>")
    page.save(folder / "scan.png")
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{PAGE_NS}"><Metadata><Creator>t</Creator>'
           "<Created>2026-01-01T00:00:00</Created><LastChange>2026-01-01T00:00:00</LastChange></Metadata>"
           '<Page imageFilename="scan.png" imageWidth="400" imageHeight="200">'
           '<TextRegion id="r1"><Coords points="0,0 400,0 400,200 0,200"/>' + "".join(lines)
           + "</TextRegion></Page></PcGts>")
    (folder / "scan.xml").write_text(xml, encoding="utf-8")
    return folder / "scan.xml"


@pytest.mark.slow
def test_page_xml_gets_the_text_in_the_right_lines(learned_run: Path, tmp_path: Path) -> None:
    xml = _page(tmp_path / "in")
    seen: list[InferProgress] = []
    report = recognise(learned_run / "model.pt", [xml], tmp_path / "out", progress=seen.append)
    assert report.files == 1 and report.lines == 3 and report.lines_per_s > 0
    assert [p.files_done for p in seen] == [1] and seen[0].lines_done == 3
    tree = etree.parse(str(tmp_path / "out" / "scan.xml"))  # still parses
    found = {ln.get("id"): ln.findtext(f"{{{PAGE_NS}}}TextEquiv/{{{PAGE_NS}}}Unicode")
             for ln in tree.iter(f"{{{PAGE_NS}}}TextLine")}
    assert set(found) == set(TRUTH)
    for line_id, text in found.items():
        # each line's text is nearer its own truth than any other line's: right text, right line
        distances = {other: Levenshtein.normalized_distance(text, truth) for other, truth in TRUTH.items()}
        assert min(distances, key=distances.get) == line_id, (found, TRUTH)
    assert len(tree.findall(f".//{{{PAGE_NS}}}TextLine[@id='tl_b']/{{{PAGE_NS}}}TextEquiv")) == 1
    plain = (tmp_path / "out" / "scan.txt").read_text().splitlines()
    assert plain == [found[i] for i in TRUTH]
    assert xml.read_text().count("old text") == 1  # the input is left alone


@pytest.mark.slow
def test_line_images_and_int8(learned_run: Path, tmp_path: Path) -> None:
    (tmp_path / "lines").mkdir()
    draw_digits("90210").save(tmp_path / "lines" / "a.png")
    draw_digits("4711").save(tmp_path / "lines" / "b.png")
    fp32 = recognise(learned_run / "model.pt", [tmp_path / "lines"], tmp_path / "out32")
    int8 = recognise(learned_run / "model.pt", [tmp_path / "lines"], tmp_path / "out8", int8=True)
    assert fp32.lines == int8.lines == 2 and int8.int8
    for name, truth in (("a", "90210"), ("b", "4711")):
        text32 = (tmp_path / "out32" / f"{name}.txt").read_text().strip()
        text8 = (tmp_path / "out8" / f"{name}.txt").read_text().strip()
        assert Levenshtein.normalized_distance(text32, truth) <= 0.4
        assert Levenshtein.normalized_distance(text8, text32) <= 0.4


def test_no_model_or_no_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HtrError, match="does not exist"):
        recognise(tmp_path / "none.pt", [tmp_path], tmp_path / "out")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(HtrError, match="not a model"):
        recognise(tmp_path / "junk.pt", [tmp_path], tmp_path / "out")
