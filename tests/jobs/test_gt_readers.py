"""Ground-truth readers on hand-written PAGE 2013/2019, ALTO v2/v4 and pair samples."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.htr.errors import GroundTruthError
from jobs.htr.formats import parse_xml
from jobs.htr.gt import (
    REASONS,
    GtReport,
    check_ground_truth,
    iter_lines_for_inference,
    iter_samples,
    load_ground_truth,
    normalize_text,
)
from jobs.htr.lineimage import crop_line

FIXTURES = Path(__file__).parent / "fixtures"


def read(paths: list[Path], normalization: str = "NFC") -> tuple[dict[str, str], GtReport]:
    report = GtReport()
    samples = list(iter_samples(paths, normalization=normalization, report=report))
    return {s.key: s.text or "" for s in samples}, report


def skipped(report: GtReport) -> set[tuple[str, str | None, str]]:
    return {(Path(s.file).name, s.line, s.reason) for s in report.skipped}


def test_page_2013_lines_text_and_bad_lines(gt_tree: Path) -> None:
    texts, report = read([gt_tree / "page2013"])
    assert texts == {
        "page_2013.xml#r1l1": "Anno 1793 den 5ten Martii",  # whitespace collapsed
        "page_2013.xml#r1l2": "Müller und Fräulein",  # NFD in the file, NFC out
        "page_2013.xml#r1l3": "Johann Heinrich",  # no line TextEquiv: the words joined
    }
    assert skipped(report) == {("page_2013.xml", "r1l4", "empty-text"),
                               ("page_2013.xml", "r1l5", "outside-page")}
    assert report.counts == {"empty-text": 1, "outside-page": 1}
    assert (report.files, report.lines) == (1, 3)


def test_page_2019_lowest_index_table_cells_and_image_in_parent_folder(gt_tree: Path) -> None:
    texts, report = read([gt_tree / "transkribus"])
    assert texts == {
        "page/page_2019.xml#tl_1": "Straße nach Łódź",  # index 0 beats index 1 listed first
        "page/page_2019.xml#tl_2": "Fräulein Anna, 12,50 fl.",  # Unicode, not PlainText
        "page/page_2019.xml#tl_4": "Zeuge: Peter",  # a line inside a table cell
    }
    assert skipped(report) == {("page_2019.xml", "tl_3", "empty-text")}


def test_page_geometry_polygon_and_baseline(gt_tree: Path) -> None:
    doc = parse_xml(gt_tree / "page2013" / "page_2013.xml")
    line = doc.lines[1]
    assert doc.format == "page" and doc.namespace.endswith("2013-07-15")
    assert (doc.image_ref, doc.width, doc.height) == ("page_2013.png", 600, 400)
    assert line.polygon is not None and len(line.polygon) == 6
    assert line.bbox == (30, 92, 570, 158)
    assert line.baseline == ((30, 140), (570, 140))


def test_alto_v2_strings_spaces_hyphen_and_windows_file_name(gt_tree: Path) -> None:
    texts, report = read([gt_tree / "alto" / "alto_v2.xml"])
    assert texts == {"alto_v2.xml#TL1": "In der Stadt Ham-", "alto_v2.xml#TL2": "burg 1848."}
    assert skipped(report) == {("alto_v2.xml", "TL3", "empty-text")}
    doc = parse_xml(gt_tree / "alto" / "alto_v2.xml")
    assert doc.lines[0].polygon is None and doc.lines[0].bbox == (20, 20, 620, 70)
    assert doc.lines[0].baseline == ((20, 60), (620, 60))


def test_alto_v4_polygons_and_geometry_from_strings(gt_tree: Path) -> None:
    samples, report = load_ground_truth([gt_tree / "alto" / "alto_v4.xml"])
    assert [(s.line_id, s.text) for s in samples] == [
        ("line_1", "Øresund 1799"), ("line_2", "baptizatus est"), ("line_3", "natus obiit")]
    doc = parse_xml(gt_tree / "alto" / "alto_v4.xml")
    assert doc.lines[0].polygon == ((20, 30), (300, 20), (600, 30), (600, 75), (300, 80), (20, 75))
    assert doc.lines[1].polygon == ((20, 110), (600, 110), (600, 170), (20, 170))  # "x y x y" form
    assert doc.lines[2].bbox == (20, 200, 340, 260)  # no HPOS...: the union of its Strings
    assert doc.lines[0].baseline == ((20, 70), (600, 66))
    assert samples[0].image.shape == (61, 581)  # the polygon's box, rows 20..80, columns 20..600
    assert samples[2].image.shape == (60, 320)
    assert report.skipped == []


def test_pairs_find_their_image_and_report_the_rest(gt_tree: Path) -> None:
    samples, report = load_ground_truth([gt_tree / "pairs"])
    assert [(s.key, s.text, s.image_path.name, s.image.shape) for s in samples] == [
        ("l001", "Witwe des Johann", "l001.png", (48, 320)),
        ("l002", "Øresund 1799", "l002.bin.png", (40, 280)),
    ]
    assert skipped(report) == {("l003.gt.txt", "l003", "missing-image"), ("l004.gt.txt", "l004", "empty-text")}


def test_whole_tree_in_stable_order(gt_tree: Path) -> None:
    first = [s.key for s in iter_samples([gt_tree])]
    assert first == [s.key for s in iter_samples([gt_tree])]
    assert len(first) == 3 + 3 + 2 + 3 + 2
    assert first[0].startswith("alto/alto_v2.xml#")


def test_polygon_mask_sets_outside_pixels_to_white() -> None:
    page = np.zeros((100, 200), dtype=np.uint8)  # all ink
    triangle = ((10.0, 10.0), (110.0, 10.0), (10.0, 60.0))
    crop = crop_line(page, triangle, None)
    assert crop is not None and crop.shape == (51, 101)
    assert crop[0, 0] == 0 and crop[5, 5] == 0  # inside
    assert crop[50, 100] == 255 and crop[40, 90] == 255  # beyond the hypotenuse
    inside = crop == 0
    assert 0.4 < inside.mean() < 0.6  # about half of the box is the triangle


def test_reader_masks_pixels_outside_a_line_polygon(gt_tree: Path) -> None:
    black = Image.new("L", (600, 400), 0)
    black.save(gt_tree / "page2013" / "page_2013.png")
    samples = {s.line_id: s for s in iter_samples([gt_tree / "page2013"])}
    image = samples["r1l2"].image  # hexagon: 30,100 300,92 570,100 570,150 300,158 30,150
    assert image.shape == (67, 541)
    assert image[0, 0] == 255 and image[-1, 0] == 255 and image[0, -1] == 255  # corners of the box
    assert image[8, 270] == 0 and image[33, 5] == 0  # the top vertex and the middle
    assert (samples["r1l1"].image == 0).all()  # a rectangle masks nothing


def test_bbox_fallback_clips_to_the_page() -> None:
    page = np.full((50, 80), 7, dtype=np.uint8)
    crop = crop_line(page, None, (60, 10, 120, 30))
    assert crop is not None and crop.shape == (20, 20) and (crop == 7).all()
    assert crop_line(page, None, (90, 10, 120, 30)) is None
    assert crop_line(page, ((100.0, 0.0), (120.0, 0.0), (110.0, 20.0)), None) is None


def test_bad_files_are_counted_and_never_stop_the_run(gt_tree: Path, bad_tree: Path) -> None:
    texts, report = read([bad_tree, gt_tree / "pairs"])
    assert len(texts) == 2  # the good pairs after the bad files
    assert skipped(report) >= {
        ("broken.xml", None, "broken-xml"),
        ("mets.xml", None, "unknown-format"),
        ("missing_image.xml", "m1", "missing-image"),
        ("missing_image.xml", "m2", "missing-image"),
        ("unreadable_image.xml", "g1", "unreadable-image"),
        ("unreadable_image.xml", "g2", "unreadable-image"),
    }
    assert report.counts["missing-image"] == 3  # two lines + the l003 pair
    summary = report.summary()
    assert "broken.xml: broken-xml" in summary and "missing_image.xml line m1: missing-image" in summary


def test_nothing_usable_raises_a_clear_error(bad_tree: Path) -> None:
    with pytest.raises(GroundTruthError) as info:
        check_ground_truth([bad_tree])
    message = str(info.value)
    assert "no usable line" in message and "broken-xml: 1" in message and "missing-image: 2" in message
    assert info.value.fix and "run again" in info.value.fix
    # The first skipped samples are named in the message itself: nothing else lists them.
    first = _report_of(bad_tree).skipped
    files = list(dict.fromkeys(s.file for s in first))[:2]
    assert "; first: " in info.value.message and all(f in info.value.message for f in files)
    assert f"{first[0].reason}, {REASONS[first[0].reason]}" in info.value.message
    assert "above" not in str(info.value)


def _report_of(tree: Path) -> GtReport:
    report = GtReport()
    for _ in iter_samples([tree], report=report):
        pass
    return report


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(GroundTruthError, match=r"no ground truth found in .*synth makes a sample set"):
        check_ground_truth([tmp_path])
    with pytest.raises(GroundTruthError, match="does not exist"):
        check_ground_truth([tmp_path / "typo"])


@pytest.mark.parametrize(("form", "expected"), [
    ("NFC", "Müller und Fräulein"),
    ("NFD", unicodedata.normalize("NFD", "Müller und Fräulein")),
    ("none", "Mu\u0308ller und Fra\u0308ulein"),
])
def test_normalization_forms(gt_tree: Path, form: str, expected: str) -> None:
    texts, _ = read([gt_tree / "page2013"], normalization=form)
    assert texts["page_2013.xml#r1l2"] == expected


def test_nfkc_folds_compatibility_characters() -> None:
    assert normalize_text("ﬁ ſ  x²\t", "NFKC") == "fi s x2"
    with pytest.raises(GroundTruthError, match="use one of NFC, NFD, NFKC, NFKD, none"):
        normalize_text("x", "NFX")


def test_inference_reads_lines_without_text_and_bare_line_images(gt_tree: Path) -> None:
    samples = list(iter_lines_for_inference([gt_tree / "transkribus", gt_tree / "pairs"]))
    by_key = {s.key: s for s in samples}
    assert by_key["page/page_2019.xml#tl_3"].text is None  # no text: still recognised
    assert by_key["page/page_2019.xml#tl_3"].format == "page"
    assert {k for k, s in by_key.items() if s.format == "image"} == {"l001.png", "l002.bin.png", "l004.png"}
    assert "page_2019.jpg" not in by_key  # a page image is not a line


def test_ground_truth_images_are_grayscale_uint8(gt_tree: Path) -> None:
    Image.new("RGBA", (320, 48), (0, 0, 0, 0)).save(gt_tree / "pairs" / "l001.png")  # transparent
    Image.new("I;16", (280, 40), 65535).save(gt_tree / "pairs" / "l002.bin.png")  # 16-bit white
    samples, _ = load_ground_truth([gt_tree / "pairs"])
    for s in samples:
        assert s.image.dtype == np.uint8 and s.image.ndim == 2
        assert (s.image == 255).all()


def test_alto_in_tenths_of_millimetres_is_scaled_to_the_image(tmp_path: Path) -> None:
    xml = tmp_path / "alto_v3_mm10.xml"
    xml.write_bytes((FIXTURES / "units" / "alto_v3_mm10.xml").read_bytes())
    Image.new("L", (500, 250), 0).save(tmp_path / "alto_v3_mm10.png")
    (sample,) = iter_samples([xml])
    assert parse_xml(xml).unit == "mm10"
    assert (sample.text, sample.image.shape) == ("Kraków 1848", (50, 400))  # 200 x 1600 mm10 at 1/4


def test_page_xml_with_a_smaller_image_than_it_states(gt_tree: Path) -> None:
    Image.new("L", (300, 200), 0).save(gt_tree / "page2013" / "page_2013.png")  # half of 600 x 400
    samples = {s.line_id: s for s in iter_samples([gt_tree / "page2013"])}
    assert samples["r1l1"].image.shape == (26, 271)  # rows 30..80, columns 30..570, halved


def test_duplicate_line_ids_get_distinct_keys(gt_tree: Path) -> None:
    xml = gt_tree / "page2013" / "page_2013.xml"
    xml.write_text(xml.read_text(encoding="utf-8").replace('id="r1l2"', 'id="r1l1"'), encoding="utf-8")
    keys = [s.key for s in iter_samples([xml])]
    assert keys == ["page_2013.xml#r1l1", "page_2013.xml#r1l1~2", "page_2013.xml#r1l3"]


def test_external_entities_are_not_resolved(gt_tree: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    xml = gt_tree / "page2013" / "page_2013.xml"
    body = xml.read_text(encoding="utf-8").split("\n", 1)[1]
    doctype = f'<!DOCTYPE PcGts [<!ENTITY x SYSTEM "file://{secret}">]>\n'
    xml.write_text(doctype + body.replace("Anno  1793", "Anno &x; 1793"), encoding="utf-8")
    texts, report = read([xml])
    assert texts == {} and "TOPSECRET" not in report.summary()
    assert report.counts == {"broken-xml": 1}


def test_internal_entities_are_expanded(gt_tree: Path) -> None:
    xml = gt_tree / "page2013" / "page_2013.xml"
    body = xml.read_text(encoding="utf-8").split("\n", 1)[1]
    xml.write_text('<!DOCTYPE PcGts [<!ENTITY longs "ſ">]>\n' + body.replace("Martii", "Mar&longs;ii"),
                   encoding="utf-8")
    texts, _ = read([xml])
    assert texts["page_2013.xml#r1l1"] == "Anno 1793 den 5ten Marſii"


def test_a_line_that_is_only_a_baseline_is_skipped(gt_tree: Path) -> None:
    xml = gt_tree / "page2013" / "page_2013.xml"
    thin = '<Coords points="30,240 570,240 570,242 30,242"/>'  # 541 x 3 px
    xml.write_text(xml.read_text(encoding="utf-8").replace(
        '<Coords points="30,240 570,240 570,290 30,290"/>', thin).replace("<Unicode>   </Unicode>",
                                                                        "<Unicode>thin</Unicode>"),
        encoding="utf-8")
    _, report = read([xml])
    assert ("page_2013.xml", "r1l4", "degenerate-line") in skipped(report)
