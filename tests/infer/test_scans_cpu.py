"""Raw page scans on the CPU path, through the CLI: a folder mixing a scan without XML, a PAGE
page with its image and line images; a two-page TIFF written as ALTO; the plan counts layout
analysis. Layout analysis costs seconds per page here: three scan pages in all, each run once
(module fixtures), the assertions spread over small tests.

The shared model (tests/infer/conftest.py) reads badly (CER near 1 on its own lines): the text is
checked against what the same model reads on the true lines, and the lines by position."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from lxml import etree
from PIL import Image
from scan_env import ALTO_NS, PAGE_NS, cer, match_by_position, page_lines, raw_scan, synth_set
from typer.testing import CliRunner

from launcher.cli import app
from ledger.book import Ledger
from ledger.db import open_engine

pytestmark = pytest.mark.slow


def _infer(db: str, inputs: Path, model: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["--db", db, "infer", str(inputs), "--model", str(model), "--out", str(out),
                                    "--gpu", "none", "--yes", "--format", "json", *extra])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, model: Path) -> dict[str, object]:
    """One run over: pages/page_0001.jpg (a scan, its XML kept aside), pages/page_0002.jpg +
    .xml (a PAGE page), two line images."""
    root = tmp_path_factory.mktemp("scans-cpu")
    gt = synth_set(root / "gt", 36, 11)
    folder = root / "in"
    raw_scan(gt / "pages" / "page_0001.xml", folder / "pages", root / "truth")
    for name in ("page_0002.jpg", "page_0002.xml"):
        shutil.copy(gt / "pages" / name, folder / "pages" / name)
    (folder / "lines").mkdir()
    for image in sorted((gt / "lines").glob("*.png"))[:2]:
        shutil.copy(image, folder / "lines" / image.name)
    db = f"sqlite:///{root / 'ledger.db'}"
    result = _infer(db, folder, model, root / "out")
    return {"root": root, "gt": gt, "in": folder, "out": root / "out", "db": db, "result": result}


def test_a_folder_of_scans_xml_pages_and_lines_is_read_whole(mixed: dict[str, object]) -> None:
    result = mixed["result"]
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["status"] == "done" and data["done"] == 4 and not data["dead"], data
    assert data["segmented"] == 1 and data["segment_s"] > 0
    assert data["compare"]["pages"] == 4 and data["compare"]["line"].startswith("these 4 pages cost $")
    assert " here; at the commercial price of $" in data["compare"]["line"]
    out = Path(str(mixed["out"]))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                     and ".gpuhire" not in p.parts)
    lines = sorted(p.relative_to(Path(str(mixed["in"]))).with_suffix(".txt").as_posix()
                   for p in Path(str(mixed["in"]), "lines").glob("*.png"))
    assert written == sorted(["pages/page_0001.xml", "pages/page_0001.txt", "pages/page_0002.xml",
                              "pages/page_0002.txt", *lines])  # the scan's layout and text, nothing else
    manifest = [json.loads(x)["page"] for x in (out / ".gpuhire" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(manifest) == sorted(["pages/page_0001.jpg", "pages/page_0002.xml",
                                       *(x.replace(".txt", ".png") for x in lines)])  # the image's own key

    job = Ledger(open_engine(str(mixed["db"]))).get_job(data["job"])
    assert job.spec["segmented"] == 1 and job.spec["segment_s_per_page"] > 0  # for the next plan


def test_the_scans_page_xml_validates_and_its_lines_are_where_the_true_ones_are(mixed: dict[str, object],
                                                                                model: Path, tmp_path: Path) -> None:
    from jobs.htr.infer import recognise
    from jobs.htr.segment import validate_page

    out = Path(str(mixed["out"]))
    xml = out / "pages" / "page_0001.xml"
    assert validate_page(xml) == []
    tree = etree.parse(str(xml))
    page = tree.find(f".//{PAGE_NS}Page")
    assert page.get("imageFilename") == "page_0001.jpg" and page.get("imageWidth") and page.get("imageHeight")
    found = tree.findall(f".//{PAGE_NS}TextLine")
    assert all(ln.find(f"{PAGE_NS}TextEquiv").get("conf") is not None for ln in found)
    text = (out / "pages" / "page_0001.txt").read_text(encoding="utf-8").splitlines()
    assert text == [ln.findtext(f"{PAGE_NS}TextEquiv/{PAGE_NS}Unicode") for ln in found]  # reading order

    truth = page_lines(Path(str(mixed["root"])) / "truth" / "page_0001.xml")
    pairs = match_by_position(truth, page_lines(xml))
    assert abs(len(found) - len(truth)) <= 1 and sum(r is not None for _, r in pairs) >= len(truth) - 1
    # the same model on the true lines of the same page: the pipeline may add little to its errors
    gt_copy = tmp_path / "gt"
    gt_copy.mkdir()
    shutil.copy(Path(str(mixed["root"])) / "truth" / "page_0001.xml", gt_copy)
    shutil.copy(Path(str(mixed["gt"])) / "pages" / "page_0001.jpg", gt_copy)
    recognise(model, [gt_copy], tmp_path / "lines-only", device="cpu")
    lines_only = cer(match_by_position(truth, page_lines(tmp_path / "lines-only" / "page_0001.xml")))
    assert cer(pairs) <= 1.5 * lines_only + 0.05, (cer(pairs), lines_only)


def test_a_rerun_does_nothing_and_the_plan_counts_layout_analysis(mixed: dict[str, object],
                                                                  model: Path) -> None:
    again = _infer(str(mixed["db"]), Path(str(mixed["in"])), model, Path(str(mixed["out"])))
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "nothing-to-do"  # type: ignore[attr-defined]
    fresh = Path(str(mixed["root"])) / "plan-out"
    plan = CliRunner().invoke(app, ["--db", str(mixed["db"]), "infer", str(mixed["in"]), "--model", str(model),
                                    "--out", str(fresh), "--plan-only", "--no-calibrate", "--format", "json"])
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.stdout)
    assert data["scans"] == 1 and data["pages"] == 4
    cpu = data["options"]["cpu"]
    measured = Ledger(open_engine(str(mixed["db"]))).jobs("infer")[0].spec["segment_s_per_page"]
    assert cpu["segment_source"] == "measured" and cpu["segment_s_per_page"] == measured
    assert cpu["segment_s"] == math.ceil(measured) and data["segment_s"] == cpu["segment_s"]
    assert data["options"]["t4"]["segment_s_per_page"] == 1.5  # the documented default until measured
    assert data["options"]["l4"]["segment_s_per_page"] == 1.0
    lines_s = math.ceil(data["lines"] / cpu["lines_per_s"])
    assert cpu["seconds"] == lines_s + cpu["segment_s"]


@pytest.fixture(scope="module")
def tiff_alto(tmp_path_factory: pytest.TempPathFactory, model: Path) -> dict[str, object]:
    """One run over a two-page TIFF (two synthetic pages), written as ALTO."""
    root = tmp_path_factory.mktemp("scans-tiff")
    gt = synth_set(root / "gt", 24, 3, pairs=False)  # 8 to 16 lines a page: two pages at least
    first, second = (Image.open(gt / "pages" / f"page_000{n}.jpg") for n in (1, 2))
    (root / "in").mkdir()
    first.save(root / "in" / "book.tif", save_all=True, append_images=[second], compression="tiff_lzw")
    result = _infer(f"sqlite:///{root / 'ledger.db'}", root / "in", model, root / "out", "--output-format", "alto")
    return {"root": root, "gt": gt, "out": root / "out", "result": result}


def test_a_multi_page_tiff_gives_alto_and_text_per_page(tiff_alto: dict[str, object]) -> None:
    result = tiff_alto["result"]
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["done"] == 1 and data["segmented"] == 2
    out = Path(str(tiff_alto["out"]))
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "book_p0001.png", "book_p0001.txt", "book_p0001.xml", "book_p0002.png", "book_p0002.txt", "book_p0002.xml"]
    for n in (1, 2):
        tree = etree.parse(str(out / f"book_p000{n}.xml"))
        assert tree.getroot().tag == f"{ALTO_NS}alto"
        assert tree.findtext(f".//{ALTO_NS}MeasurementUnit") == "pixel"
        assert tree.findtext(f".//{ALTO_NS}sourceImageInformation/{ALTO_NS}fileName") == f"book_p000{n}.png"
        lines = tree.findall(f".//{ALTO_NS}Layout/{ALTO_NS}Page/{ALTO_NS}PrintSpace/{ALTO_NS}TextBlock/"
                             f"{ALTO_NS}TextLine")
        truth = len(etree.parse(str(Path(str(tiff_alto["gt"])) / "pages" / f"page_000{n}.xml"))
                    .findall(f".//{PAGE_NS}TextLine"))
        assert abs(len(lines) - truth) <= 1
        for line in lines:
            assert all(line.get(k) for k in ("BASELINE", "HPOS", "VPOS", "WIDTH", "HEIGHT"))
            assert line.find(f"{ALTO_NS}Shape/{ALTO_NS}Polygon") is not None
        texts = (out / f"book_p000{n}.txt").read_text(encoding="utf-8").splitlines()
        assert len(texts) == len(lines)
        with Image.open(out / f"book_p000{n}.png") as frame:  # the image the XML names, as segmented
            page = tree.find(f".//{ALTO_NS}Page")
            assert frame.size == (int(page.get("WIDTH")), int(page.get("HEIGHT")))
