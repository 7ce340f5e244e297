"""The CPU path end to end through the CLI: real pages, the real model, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

from lxml import etree
from typer.testing import CliRunner

from launcher.cli import app
from ledger.book import Ledger
from ledger.db import open_engine

PAGE_NS = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"


def _run(db: str, pages: Path, model: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["--db", db, "infer", str(pages), "--model", str(model), "--out", str(out),
                                    "--gpu", "none", "--yes", *extra])


def _page_keys(pages: Path) -> set[str]:
    from jobs.htr.pages import list_pages

    return {p.key for p in list_pages([pages])}


def test_pages_recognised_once_and_a_rerun_does_nothing(pages: Path, model: Path, tmp_path: Path,
                                                        sqlite_db: str) -> None:
    out = tmp_path / "out"
    result = _run(sqlite_db, pages, model, out, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    keys = _page_keys(pages)
    assert data["status"] == "done" and data["done"] == len(keys) and len(keys) > 20 and not data["dead"]
    for xml in (k for k in keys if k.endswith(".xml")):  # every line got a TextEquiv, the file parses
        tree = etree.parse(str(out / xml))
        lines = tree.findall(f".//{PAGE_NS}TextLine")
        assert lines and all(ln.find(f"{PAGE_NS}TextEquiv/{PAGE_NS}Unicode") is not None for ln in lines)
        assert len((out / xml).with_suffix(".txt").read_text().splitlines()) == len(lines)
    for image in (k for k in keys if k.endswith(".png")):
        assert (out / image).with_suffix(".txt").exists()
    manifest = [json.loads(line)["page"] for line in (out / ".gpuhire" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(manifest) == sorted(keys)  # each page exactly once

    book = Ledger(open_engine(sqlite_db))
    job = book.get_job(data["job"])
    assert job.kind == "infer" and job.status == "done" and job.gpu_model == "cpu"
    assert job.lines_per_s is None  # too few lines to measure: loading the model would dominate
    sessions = book.sessions(job_id=job.id)
    assert len(sessions) == 1 and sessions[0].session.end_reason == "completed"

    again = _run(sqlite_db, pages, model, out)
    assert again.exit_code == 0 and "nothing to do" in again.stderr
    assert len([j for j in book.jobs("infer") if j.status != "calibration"]) == 1


def test_a_corrupt_image_is_named_and_the_rest_complete(pages: Path, model: Path, tmp_path: Path,
                                                        sqlite_db: str) -> None:
    bad = sorted((pages / "lines").glob("*.png"))[3]
    good = bad.read_bytes()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "out"
    result = _run(sqlite_db, pages, model, out, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    key = bad.relative_to(pages).as_posix()
    total = len(_page_keys(pages))
    assert data["status"] == "partial" and data["done"] == total - 1
    # an image without XML that cannot be opened is read as a page scan would be: named with its fix
    assert [d["page"] for d in data["dead"]] == [key]
    reason = data["dead"][0]["reason"]
    assert reason.split(":")[0] in ("not-an-image", "corrupt-image") and bad.name in reason
    report = json.loads((out / "dead-letter.json").read_text())
    assert report["pages"][0]["page"] == key

    bad.write_bytes(good)  # fixed: the rerun recognises that page only
    again = _run(sqlite_db, pages, model, out, "--format", "json")
    assert again.exit_code == 0, again.output
    fixed = json.loads(again.stdout)
    assert fixed["done"] == 1 and fixed["skipped"] == total - 1 and not (out / "dead-letter.json").exists()


def test_a_page_changed_or_a_new_model_is_recognised_again(pages: Path, model: Path, tmp_path: Path,
                                                           sqlite_db: str) -> None:
    import shutil

    out = tmp_path / "out"
    assert _run(sqlite_db, pages, model, out).exit_code == 0
    page = sorted((pages / "lines").glob("*.png"))[0]
    key = page.relative_to(pages).as_posix()
    page.write_bytes(b"corrupt now")  # changed since: its old text must not pass for the new file
    result = _run(sqlite_db, pages, model, out, "--format", "json")
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and data["done"] == 0 and [d["page"] for d in data["dead"]] == [key]
    assert not (out / key).with_suffix(".txt").exists()

    other = tmp_path / "other-model.pt"
    shutil.copy(model, other)  # another model file: every page is read again
    rerun = _run(sqlite_db, pages, other, out, "--format", "json")
    assert rerun.stdout, rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["skipped"] == 0 and again["done"] == len(_page_keys(pages)) - 1


def test_names_with_hash_signs_keep_their_text(tmp_path: Path, model: Path, sqlite_db: str) -> None:
    from PIL import Image, ImageDraw

    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("scan#3.png", "scan.png"):
        img = Image.new("L", (240, 48), 255)
        ImageDraw.Draw(img).text((8, 10), "1914", fill=0)
        img.save(folder / name)
    out = tmp_path / "out"
    result = _run(sqlite_db, folder, model, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.txt")) == ["scan#3.txt", "scan.txt"]
    assert all(len(p.read_text().splitlines()) == 1 for p in out.glob("*.txt"))


def test_a_broken_page_xml_is_named_as_broken(pages: Path, model: Path, tmp_path: Path, sqlite_db: str) -> None:
    xml = sorted(pages.rglob("*.xml"))[0]
    xml.write_text(xml.read_text()[:200])  # cut short: not well-formed any more
    key = xml.relative_to(pages).as_posix()
    result = _run(sqlite_db, pages, model, tmp_path / "out", "--format", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert [d["page"] for d in data["dead"]] == [key]  # its image is not taken for a line of its own
    assert "broken-xml" in data["dead"][0]["reason"]
