"""Synthetic ground truth: parses with our own readers, right line count, deterministic, has ink."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from lxml import etree

import jobs.htr.synth as synth_module
from jobs.htr.formats import parse_xml
from jobs.htr.gt import GtReport, iter_samples
from jobs.htr.synth import PAGE_NS, WORDS, make_text, synth, synth_main


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_reads_back_with_the_requested_number_of_lines(synth_gt: Path) -> None:
    report = GtReport()
    samples = list(iter_samples([synth_gt], report=report))
    assert len(samples) == 120 and report.skipped == []
    assert sum(s.format == "page" for s in samples) == 60 and sum(s.format == "pair" for s in samples) == 60
    assert len({s.key for s in samples}) == 120
    pages = sorted((synth_gt / "pages").glob("*.xml"))
    assert len(pages) >= 4 and all(parse_xml(p).namespace == PAGE_NS for p in pages)
    for pair in sorted((synth_gt / "lines").glob("*.gt.txt"))[:5]:
        assert pair.read_text(encoding="utf-8").strip() in {s.text for s in samples}


def test_every_line_has_ink_inside_its_polygon(synth_gt: Path) -> None:
    for sample in iter_samples([synth_gt / "pages"]):
        dark = (sample.image < 128).mean()
        assert 0.01 < dark < 0.6, (sample.key, dark)  # text, not an empty or all-black crop
        assert sample.image.shape[0] >= 30 and sample.image.shape[1] > sample.image.shape[0]


def test_page_xml_structure(synth_gt: Path) -> None:
    page_xml = sorted((synth_gt / "pages").glob("*.xml"))[0]
    root = etree.parse(str(page_xml)).getroot()
    ns = {"pc": PAGE_NS}
    assert [etree.QName(c).localname for c in root] == ["Metadata", "Page"]
    line = root.find(".//pc:TextLine", ns)
    assert [etree.QName(c).localname for c in line] == ["Coords", "Baseline", "TextEquiv"]
    assert line.find("pc:TextEquiv", ns).get("index") == "0"
    region = root.find(".//pc:TextRegion", ns)
    assert etree.QName(region[-1]).localname == "TextEquiv"  # after the lines, as the schema orders it
    for coords in root.iter(f"{{{PAGE_NS}}}Coords"):
        pairs = [tuple(map(int, p.split(","))) for p in coords.get("points").split()]
        assert len(pairs) >= 3 and all(x >= 0 and y >= 0 for x, y in pairs)
    doc = parse_xml(page_xml)
    assert (synth_gt / "pages" / doc.image_ref).is_file()
    assert all(ln.baseline and len(ln.baseline) == 2 for ln in doc.lines)


def test_same_seed_same_bytes_other_seed_other_lines(tmp_path: Path) -> None:
    synth(tmp_path / "a", 12, seed=3)
    synth(tmp_path / "b", 12, seed=3)
    synth(tmp_path / "c", 12, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


@pytest.mark.parametrize(("pages", "pairs", "expect"), [(True, False, (7, 0)), (False, True, (0, 7))])
def test_only_pages_or_only_pairs(tmp_path: Path, pages: bool, pairs: bool, expect: tuple[int, int]) -> None:
    report = synth(tmp_path / "o", 7, seed=1, pages=pages, pairs=pairs)
    assert (report.page_lines, report.pair_lines) == expect
    assert len(list(iter_samples([tmp_path / "o"]))) == 7


def test_without_system_fonts_the_builtin_font_and_ascii_text(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth_module, "FONT_DIRS", ())
    report = synth(tmp_path / "o", 6, seed=2)
    assert report.fonts == ["built-in"]
    texts = [s.text or "" for s in iter_samples([tmp_path / "o"])]
    assert len(texts) == 6 and all(t.isascii() for t in texts)


def test_text_has_diacritics_digits_and_punctuation() -> None:
    rng = np.random.default_rng(0)
    text = "".join(make_text(rng) for _ in range(300))
    assert set("äöüéßł") & set(text) and any(c.isdigit() for c in text) and set(".,;:?") & set(text)
    assert len(set(WORDS)) == len(WORDS)  # no word weighs double


def test_synth_main_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_main(tmp_path / "o", 3, 0) == 0
    assert "wrote 3 synthetic lines" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 1"):
        synth(tmp_path / "z", 0, 0)
