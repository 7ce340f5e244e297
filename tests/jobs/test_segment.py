"""jobs.htr.segment with real kraken on synthetic scans: lines found where the ground truth has
them, in reading order, written as schema-valid PAGE and structurally sound ALTO that stay valid
once jobs.htr.writeback fills in the text; blank and line-free pages refused.

Segmentation costs ~10 s a page on two cores: one text page and one line-free page are
segmented once for the module and shared.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from lxml import etree  # type: ignore[import-untyped]
from PIL import Image, ImageFilter

from jobs.htr.errors import HtrError
from jobs.htr.formats import LineRecord, parse_xml
from jobs.htr.scans import ScanError, read_scan
from jobs.htr.segment import Layout, Segmenter, validate_page, write_layout
from jobs.htr.synth import synth
from jobs.htr.writeback import write_text

pytestmark = pytest.mark.slow

ALTO = "{http://www.loc.gov/standards/alto/ns-v4#}"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first synthetic page (JPEG next to its ground-truth PAGE XML)."""
    out = tmp_path_factory.mktemp("segment") / "gt"
    synth(out, 12, 5, pairs=False)
    return sorted((out / "pages").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


@pytest.fixture(scope="module")
def layout(segmenter: Segmenter, page: Path) -> Layout:
    (frame,) = read_scan(page)
    return segmenter.segment(frame.image)


@pytest.fixture(scope="module")
def truth(page: Path) -> tuple[LineRecord, ...]:
    return parse_xml(page.with_suffix(".xml")).lines


def _mean_y(points: list[tuple[int, int]] | tuple[tuple[float, float], ...]) -> float:
    return float(np.mean([y for _, y in points]))


def _x_overlap(a: list[tuple[int, int]], b: tuple[tuple[float, float], ...]) -> float:
    """Overlap of the two baselines' x ranges, as a share of the longer one."""
    a0, a1 = min(x for x, _ in a), max(x for x, _ in a)
    b0, b1 = min(x for x, _ in b), max(x for x, _ in b)
    return max(0.0, min(a1, b1) - max(a0, b0)) / max(a1 - a0, b1 - b0)


# ---------------------------------------------------------------- the layout


def test_every_ground_truth_line_is_found_once(layout: Layout, truth: tuple[LineRecord, ...]) -> None:
    assert len(layout.lines) == len(truth) >= 8
    unmatched = list(truth)
    for line in layout.lines:
        match = [t for t in unmatched if t.baseline and abs(_mean_y(line.baseline) - _mean_y(t.baseline)) <= 8
                 and _x_overlap(line.baseline, t.baseline) >= 0.8]
        assert len(match) == 1, f"{line.id} at y={_mean_y(line.baseline):.0f} matches {len(match)} true lines"
        unmatched.remove(match[0])
    assert not unmatched


def test_reading_order_is_top_to_bottom(layout: Layout) -> None:
    ys = [_mean_y(line.baseline) for line in layout.lines]
    assert ys == sorted(ys)
    assert [line.id for line in layout.lines] == [f"l{n}" for n in range(1, len(layout.lines) + 1)]


def test_lines_lie_in_their_regions_and_in_the_image(layout: Layout, page: Path) -> None:
    width, height = Image.open(page).size
    assert (layout.width, layout.height) == (width, height)
    region_ids = [r.id for r in layout.regions]
    assert region_ids and len(set(region_ids)) == len(region_ids)
    assert all(line.region in region_ids for line in layout.lines)
    for line in layout.lines:
        assert len(line.baseline) >= 2 and len(line.polygon) >= 3
        for x, y in line.baseline + line.polygon:
            assert 0 <= x < width and 0 <= y < height
        ys = [y for _, y in line.polygon]  # the outline encloses its baseline
        assert min(ys) <= _mean_y(line.baseline) <= max(ys)


# ---------------------------------------------------------------- PAGE and ALTO


def test_page_output_is_valid_before_and_after_writeback(layout: Layout, tmp_path: Path) -> None:
    xml = tmp_path / "page_0001.xml"
    write_layout(layout, "page_0001.jpg", xml)
    assert validate_page(xml) == []
    document = parse_xml(xml)
    assert document.image_ref == "page_0001.jpg" and (document.width, document.height) == (layout.width,
                                                                                          layout.height)
    assert [r.line_id for r in document.lines] == [line.id for line in layout.lines]
    assert all(r.text is None for r in document.lines)  # no text yet
    for record, line in zip(document.lines, layout.lines, strict=True):
        assert record.baseline == tuple((float(x), float(y)) for x, y in line.baseline)
        assert record.polygon == tuple((float(x), float(y)) for x, y in line.polygon)
    root = etree.parse(str(xml)).getroot()
    ns = {"p": root.nsmap[None]}
    assert root.findtext("p:Metadata/p:Creator", namespaces=ns) == "gpuhire"
    assert root.findtext("p:Metadata/p:Created", namespaces=ns) == root.findtext("p:Metadata/p:LastChange",
                                                                                 namespaces=ns)
    refs = root.xpath("p:Page/p:ReadingOrder/p:OrderedGroup/p:RegionRefIndexed/@regionRef", namespaces=ns)
    assert refs == [r.id for r in layout.regions]
    # As jobs.htr.infer does it: texts and confidences keyed by the reader's line ids.
    texts = {r.line_id: f"Zeile {r.index} <Müller & Söhne>" for r in document.lines}
    out = tmp_path / "out.xml"
    assert write_text(xml, "page", texts, out, confidences={k: 0.87 for k in texts}) == len(texts)
    assert validate_page(out) == []
    assert [r.text for r in parse_xml(out).lines] == list(texts.values())


def test_validate_page_reports_errors(layout: Layout, tmp_path: Path) -> None:
    xml = tmp_path / "bad.xml"
    write_layout(layout, "page_0001.jpg", xml)
    xml.write_text(xml.read_text().replace("<Baseline ", "<Baseline bogus=\"1\" ", 1))
    errors = validate_page(xml)
    assert len(errors) == 1 and "bogus" in errors[0]
    (tmp_path / "broken.xml").write_text("<PcGts")
    assert validate_page(tmp_path / "broken.xml")[0].startswith("not well-formed XML")


def _check_alto(path: Path, layout: Layout, image_name: str) -> etree._Element:
    root = etree.parse(str(path)).getroot()
    assert root.tag == f"{ALTO}alto"
    assert root.findtext(f"{ALTO}Description/{ALTO}MeasurementUnit") == "pixel"
    assert root.findtext(f"{ALTO}Description/{ALTO}sourceImageInformation/{ALTO}fileName") == image_name
    page = root.find(f"{ALTO}Layout/{ALTO}Page")
    assert (page.get("WIDTH"), page.get("HEIGHT")) == (str(layout.width), str(layout.height))
    blocks = page.findall(f"{ALTO}PrintSpace/{ALTO}TextBlock")
    assert [b.get("ID") for b in blocks] == [r.id for r in layout.regions]
    lines = [ln for b in blocks for ln in b.findall(f"{ALTO}TextLine")]
    assert [ln.get("ID") for ln in lines] == [line.id for line in layout.lines]
    for element, line in zip(lines, layout.lines, strict=True):
        xs, ys = [x for x, _ in line.polygon], [y for _, y in line.polygon]
        assert [int(element.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == [
            min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        assert element.get("BASELINE") == " ".join(f"{x} {y}" for x, y in line.baseline)
        polygon = element.find(f"{ALTO}Shape/{ALTO}Polygon")
        assert polygon is not None and polygon.get("POINTS") == " ".join(f"{x} {y}" for x, y in line.polygon)
        assert element.find(f"{ALTO}String") is not None  # ALTO wants at least one String per line
        assert next(iter(element)).tag == f"{ALTO}Shape"  # Shape first, as the schema orders it
    return root


def test_alto_output_has_the_v4_structure_and_the_same_lines(layout: Layout, tmp_path: Path) -> None:
    xml = tmp_path / "page_0001.xml"
    write_layout(layout, "page_0001.jpg", xml, "alto")
    _check_alto(xml, layout, "page_0001.jpg")
    document = parse_xml(xml)
    assert document.format == "alto" and [r.line_id for r in document.lines] == [ln.id for ln in layout.lines]
    texts = {r.line_id: "zwei Worte" for r in document.lines}
    write_text(xml, "alto", texts, xml, confidences={k: 0.5 for k in texts})
    root = _check_alto(xml, layout, "page_0001.jpg")
    assert [r.text for r in parse_xml(xml).lines] == ["zwei Worte"] * len(texts)
    assert len(root.findall(f".//{ALTO}String")) == 2 * len(texts)


def test_write_layout_is_atomic_and_checks_the_format(layout: Layout, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown layout format"):
        write_layout(layout, "x.jpg", tmp_path / "x.xml", "hocr")
    write_layout(layout, "x.jpg", tmp_path / "x.xml")
    assert [p.name for p in tmp_path.iterdir()] == ["x.xml"]  # no temporary file left behind


# ---------------------------------------------------------------- pages without lines, bad models


def test_blank_page_is_refused_before_segmentation(segmenter: Segmenter) -> None:
    rng = np.random.default_rng(1)
    paper = Image.fromarray(np.clip(rng.normal(230, 6, (1890, 1400)), 0, 255).astype(np.uint8))
    with pytest.raises(ScanError) as info:
        segmenter.segment(paper)
    assert info.value.reason == "blank-page"


def test_page_without_text_lines(segmenter: Segmenter) -> None:
    """A photo-like page (smooth blotches of light and dark, no strokes): ink, but no line."""
    rng = np.random.default_rng(0)
    coarse = rng.standard_normal((95, 70))
    grey = ((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8)
    photo = Image.fromarray(grey).resize((1400, 1890), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))
    with pytest.raises(ScanError) as info:
        segmenter.segment(photo)
    assert info.value.reason == "no-lines" and "--segment-model" in info.value.detail


def test_bad_segmentation_models(tmp_path: Path, segmenter: Segmenter) -> None:
    assert segmenter.model_name == "blla.mlmodel"
    with pytest.raises(HtrError, match="not found") as info:
        Segmenter(tmp_path / "missing.mlmodel")
    assert "--segment-model" in (info.value.fix or "")
    (tmp_path / "notes.mlmodel").write_text("not a model")
    with pytest.raises(HtrError, match="not a kraken model"):
        Segmenter(tmp_path / "notes.mlmodel")
    from kraken.lib import vgsl  # type: ignore[import-untyped,unused-ignore]

    with warnings.catch_warnings():  # save_model is deprecated for kraken 8
        warnings.simplefilter("ignore", DeprecationWarning)
        vgsl.TorchVGSLModel(vgsl="[1,48,0,1 Cr3,3,8 O1c10]").save_model(str(tmp_path / "rec.mlmodel"))
    with pytest.raises(HtrError, match="not a baseline segmentation model"):
        Segmenter(tmp_path / "rec.mlmodel")


# ---------------------------------------------------------------- the torchvision shim


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_shim_declares_the_operators_only_where_torchvision_fails() -> None:
    result = _python("""
        import sys
        try:
            import torchvision  # noqa: F401
            print("imports-cleanly")
            sys.exit(0)
        except RuntimeError as exc:
            assert "operator torchvision::nms does not exist" in str(exc), exc
        from jobs.htr import kraken_compat
        kraken_compat.load_kraken()
        import torchvision, kraken.blla  # noqa: E401,F401
        assert kraken_compat.shim_used()
        kraken_compat.load_kraken()  # a second call declares nothing more
        assert len(kraken_compat._LIBRARY) == 1
        print("shimmed", torchvision.__version__)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.startswith("imports-cleanly"):
        pytest.skip("torchvision imports cleanly here: the shim's branch cannot be taken")
    assert result.stdout.startswith("shimmed")


def test_shim_declares_nothing_where_torchvision_imports() -> None:
    """Where torchvision's own operators exist (simulated: declared before, as its compiled
    extension would), load_kraken imports it as it is and registers nothing."""
    result = _python("""
        import torch
        own = torch.library.Library("torchvision", "DEF")
        own.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        own.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        from jobs.htr import kraken_compat
        kraken_compat.load_kraken()
        import kraken.blla  # noqa: F401
        assert not kraken_compat.shim_used(), "the shim registered operators"
        print("clean")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "clean"


def test_missing_kraken_names_the_extra() -> None:
    result = _python("""
        import sys
        sys.modules["kraken"] = None  # as if the extra were not installed
        from jobs.htr.kraken_compat import KrakenMissingError, load_kraken
        try:
            load_kraken()
        except KrakenMissingError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "kraken is not installed; install the kraken extra: pip install 'gpuhire[kraken]'"
