"""Writing recognised text back into PAGE XML and ALTO: still parses, text in the right lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from jobs.htr.formats import parse_xml
from jobs.htr.gt import iter_lines_for_inference
from jobs.htr.writeback import write_alto_text, write_page_text, write_text

PAGE_2019 = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"
PAGE_2013 = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15}"
ALTO_4 = "{http://www.loc.gov/standards/alto/ns-v4#}"


def children(element: etree._Element) -> list[str]:
    return [etree.QName(c).localname for c in element if isinstance(c.tag, str)]


def line(root: etree._Element, ns: str, line_id: str, attr: str = "id") -> etree._Element:
    return next(el for el in root.iter(f"{ns}TextLine") if el.get(attr) == line_id)


def test_page_2019_text_lands_in_the_right_lines(gt_tree: Path, tmp_path: Path) -> None:
    xml_in = gt_tree / "transkribus" / "page" / "page_2019.xml"
    out = tmp_path / "out.xml"
    texts = {"tl_1": "Strasse nach Lodz!", "tl_3": "neu erkannt", "tl_4": "Zeuge: Paul", "nope": "x"}
    assert write_page_text(xml_in, texts, out, confidences={"tl_3": 0.87}) == 3
    assert {ln.line_id: ln.text for ln in parse_xml(out).lines} == {
        "tl_1": "Strasse nach Lodz!", "tl_2": "Fräulein Anna, 12,50 fl.", "tl_3": "neu erkannt", "tl_4": "Zeuge: Paul"}
    root = etree.parse(str(out)).getroot()
    first = line(root, PAGE_2019, "tl_1")
    assert [e.get("index") for e in first.findall(f"{PAGE_2019}TextEquiv")] == ["1", "0"]
    assert first.findtext(f"{PAGE_2019}TextEquiv/{PAGE_2019}Unicode") == "Strasse nach Lodz"  # index 1 kept
    assert children(first) == ["Coords", "Baseline", "TextEquiv", "TextEquiv", "TextStyle"]
    created = line(root, PAGE_2019, "tl_3")
    assert children(created) == ["Coords", "Baseline", "TextEquiv", "UserDefined"]  # schema order
    equiv = created.find(f"{PAGE_2019}TextEquiv")
    assert (equiv.get("index"), equiv.get("conf"), children(equiv)) == ("0", "0.8700", ["Unicode"])
    assert root.findtext(f"{PAGE_2019}Metadata/{PAGE_2019}LastChange") != "2024-05-17T08:12:44"
    assert root.find(f".//{PAGE_2019}TextRegion/{PAGE_2019}TextEquiv") is None  # none before, none now


def test_page_2013_plaintext_words_and_region_text(gt_tree: Path, tmp_path: Path) -> None:
    xml_in = gt_tree / "page2013" / "page_2013.xml"
    out = tmp_path / "out.xml"
    write_page_text(xml_in, {"r1l1": "Anno 1794", "r1l3": "Johann Georg"}, out)
    root = etree.parse(str(out)).getroot()
    words_only = line(root, PAGE_2013, "r1l3")
    assert children(words_only) == ["Coords", "Baseline", "Word", "Word", "TextEquiv"]
    assert words_only.find(f"{PAGE_2013}TextEquiv").get("index") is None  # no @index before 2019
    region_text = root.findtext(f".//{PAGE_2013}TextRegion/{PAGE_2013}TextEquiv/{PAGE_2013}Unicode")
    assert region_text.split("\n")[:3] == ["Anno 1794", "Mu\u0308ller und Fra\u0308ulein", "Johann Georg"]


def test_page_in_place_and_plaintext_kept_in_step(gt_tree: Path) -> None:
    xml = gt_tree / "transkribus" / "page" / "page_2019.xml"
    write_page_text(xml, {"tl_2": "Fräulein Anna, 13 fl."}, xml)
    equiv = line(etree.parse(str(xml)).getroot(), PAGE_2019, "tl_2").find(f"{PAGE_2019}TextEquiv")
    assert [c.text for c in equiv] == ["Fräulein Anna, 13 fl.", "Fräulein Anna, 13 fl."]
    assert [p.name for p in xml.parent.iterdir()] == ["page_2019.xml"]  # no temporary file left


def test_alto_v4_one_string_per_word_within_the_line(gt_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    assert write_alto_text(gt_tree / "alto" / "alto_v4.xml", {"line_1": "Oresund 1800 Ende", "line_3": "natus"},
                           out, confidences={"line_1": 0.5}) == 2
    assert [ln.text for ln in parse_xml(out).lines] == ["Oresund 1800 Ende", "baptizatus est", "natus"]
    root = etree.parse(str(out)).getroot()
    first = line(root, ALTO_4, "line_1", "ID")
    assert children(first) == ["Shape", "String", "SP", "String", "SP", "String"]
    strings = first.findall(f"{ALTO_4}String")
    assert [s.get("ID") for s in strings] == ["line_1_w1", "line_1_w2", "line_1_w3"]
    assert {s.get("WC") for s in strings} == {"0.5000"}
    xs = [float(s.get("HPOS")) for s in strings]
    right = float(strings[-1].get("HPOS")) + float(strings[-1].get("WIDTH"))
    assert xs == sorted(xs) and xs[0] == 20 and right == pytest.approx(600)
    no_box = line(root, ALTO_4, "line_3", "ID").find(f"{ALTO_4}String")
    assert no_box.get("CONTENT") == "natus" and no_box.get("HPOS") is None  # the line has no box


def test_alto_v2_hyphen_replaced(gt_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.xml"
    write_text(gt_tree / "alto" / "alto_v2.xml", "alto", {"TL1": "In der Stadt Hamburg", "TL3": ""}, out)
    assert [ln.text for ln in parse_xml(out).lines] == ["In der Stadt Hamburg", "burg 1848.", ""]
    third = line(etree.parse(str(out)).getroot(), "{http://www.loc.gov/standards/alto/ns-v2#}", "TL3", "ID")
    assert children(third) == ["String"]  # ALTO wants at least one String in a line


def test_inference_round_trip(gt_tree: Path) -> None:
    samples = [s for s in iter_lines_for_inference([gt_tree / "transkribus"]) if s.format == "page"]
    texts = {s.line_id: f"line {s.index}" for s in samples}
    write_text(samples[0].source, samples[0].format, texts, samples[0].source)
    again = {s.line_id: s.text for s in iter_lines_for_inference([gt_tree / "transkribus"])}
    assert again == texts


def test_write_text_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot write text into 'pair'"):
        write_text(tmp_path / "x.gt.txt", "pair", {}, tmp_path / "y")
