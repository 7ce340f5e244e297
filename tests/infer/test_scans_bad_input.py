"""The issue's bad input in one folder, one CLI run: a corrupt JPEG, a zero-byte file, a text file
named .png, a 30,000-pixel-wide image, a blank page, a PDF without pages, a PAGE file without a
TextLine, a page photographed sideways (EXIF rotation), next to good pages. Each bad one gets its
line in the summary and in OUT/dead-letter.json, the exit status is 1, nothing recognised is lost,
and a rerun does only what is missing."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scan_env import synth_set
from typer.testing import CliRunner

from launcher.cli import app

pytestmark = pytest.mark.slow

BAD = {  # file -> the reason its dead letter starts with
    "corrupt.jpg": ("corrupt-image",),
    "empty.jpg": ("corrupt-image",),
    "notes.png": ("not-an-image",),
    "wide.png": ("too-large",),
    "blank.png": ("blank-page",),
    "nothing.pdf": ("empty-pdf",),
    "no-lines.xml": ("no-lines",),
}


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (no pixel data: nothing may decode it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def _empty_pdf() -> bytes:
    objects = [b"<</Type/Catalog/Pages 2 0 R>>", b"<</Type/Pages/Kids[]/Count 0>>"]
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 3\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<</Size 3/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % xref


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scans-bad")
    gt = synth_set(root / "gt", 40, 7)
    pages = sorted((gt / "pages").glob("*.jpg"))
    folder = root / "in"
    folder.mkdir()
    shutil.copy(pages[0], folder / "good.jpg")  # an XML page with its image
    (folder / "good.xml").write_bytes(pages[0].with_suffix(".xml").read_bytes().replace(
        pages[0].name.encode(), b"good.jpg"))
    shutil.copy(sorted((gt / "lines").glob("*.png"))[0], folder / "line.png")
    with Image.open(pages[1]) as page:  # stored sideways, upright by its EXIF orientation
        exif = Image.Exif()
        exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
        page.rotate(90, expand=True).save(folder / "sideways.jpg", exif=exif.tobytes(), quality=90)
    (folder / "corrupt.jpg").write_bytes(pages[0].read_bytes()[:3000])  # cut short
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("the scans are in the other folder\n")
    (folder / "wide.png").write_bytes(_png_header(30_000, 2_000))
    noise = np.random.default_rng(0).normal(235, 3, (1890, 1400)).clip(0, 255).astype(np.uint8)
    Image.fromarray(noise).save(folder / "blank.png")
    (folder / "nothing.pdf").write_bytes(_empty_pdf())
    shutil.copy(pages[0], folder / "no-lines.jpg")
    xml = pages[0].with_suffix(".xml").read_text(encoding="utf-8")
    head, _, rest = xml.partition("<TextRegion")
    (folder / "no-lines.xml").write_text(head.replace(pages[0].name, "no-lines.jpg") + rest[rest.index("</Page>"):],
                                         encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def first(folder: Path, model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = folder.parent
    db = f"sqlite:///{root / 'ledger.db'}"
    result = CliRunner().invoke(app, ["--db", db, "infer", str(folder), "--model", str(model),
                                      "--out", str(root / "out"), "--gpu", "none", "--yes"])
    return {"db": db, "out": root / "out", "result": result}


def _rerun(folder: Path, model: Path, first: dict[str, object]) -> dict[str, object]:
    result = CliRunner().invoke(app, ["--db", str(first["db"]), "infer", str(folder), "--model", str(model),
                                      "--out", str(first["out"]), "--gpu", "none", "--yes", "--format", "json"])
    assert result.stdout, result.output
    return {"code": result.exit_code, **json.loads(result.stdout)}


def test_each_bad_file_is_named_with_its_reason(folder: Path, first: dict[str, object]) -> None:
    result = first["result"]
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    stdout: str = result.stdout  # type: ignore[attr-defined]
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    assert "3 recognised, 7 failed" in stdout  # the XML page, the line, the sideways scan
    assert "compare       these 3 pages cost $" in stdout  # recognised pages only, at the commercial price
    out = Path(str(first["out"]))
    dead = {e["page"]: e for e in json.loads((out / "dead-letter.json").read_text())["pages"]}
    assert set(dead) == set(BAD)
    for name, reasons in BAD.items():
        assert dead[name]["reason"].split(":")[0] in reasons, dead[name]
        assert dead[name]["file"] == str(folder / name)
        assert f"failed        {name}: {dead[name]['reason']}" in stdout  # its line in the summary
    assert "30000x2000" in dead["wide.png"]["reason"]  # the limit is said
    for name in BAD:  # never an empty success: no output at all for a page that failed
        assert not list(out.glob(Path(name).stem + ".*"))


def test_good_pages_are_read_the_sideways_one_upright(folder: Path, first: dict[str, object]) -> None:
    out = Path(str(first["out"]))
    assert (out / "good.xml").exists() and (out / "good.txt").read_text().strip()
    assert (out / "line.txt").exists()
    with Image.open(out / "sideways.png") as upright:  # the frame the XML describes
        assert upright.height > upright.width
    assert "imageFilename=\"sideways.png\"" in (out / "sideways.xml").read_text()
    truth = (folder.parent / "gt" / "pages" / "page_0002.xml").read_text().count("<TextLine")
    assert abs(len((out / "sideways.txt").read_text().splitlines()) - truth) <= 1  # its lines found upright


def test_a_rerun_retries_only_the_failed_and_loses_nothing(folder: Path, model: Path,
                                                           first: dict[str, object]) -> None:
    out = Path(str(first["out"]))
    kept = {p: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "dead-letter.json"}
    again = _rerun(folder, model, first)
    assert again["code"] == 1 and again["skipped"] == 3 and again["done"] == 0
    assert {d["page"] for d in again["dead"]} == set(BAD)  # tried again, failed again
    assert {p: p.read_bytes() for p in kept} == kept  # what was recognised is untouched

    shutil.copy(folder / "line.png", folder / "notes.png")  # fixed: a line image now
    fixed = _rerun(folder, model, first)
    assert fixed["done"] == 1 and fixed["skipped"] == 3 and len(fixed["dead"]) == len(BAD) - 1
    assert (out / "notes.txt").exists()
    assert "notes.png" not in (out / "dead-letter.json").read_text()
