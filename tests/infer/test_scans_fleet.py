"""A raw page scan through the fleet on loopback (moto as SQS and S3, a worker process on this
machine): the worker segments it with the segmentation model the job shipped, writes the PAGE
XML and text the launcher collects, and reports its layout-analysis time."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import boto3
import pytest
from infer_env import BUCKET, REGION, fleet_config
from scan_env import raw_scan, synth_set
from typer.testing import CliRunner

from launcher.cli import app

pytestmark = pytest.mark.slow


def test_a_scan_is_segmented_on_a_fleet_worker(moto_server: str, model: Path, tmp_path: Path,
                                               sqlite_db: str) -> None:
    from jobs.htr.segment import validate_page

    gt = synth_set(tmp_path / "gt", 60, 5)  # 30 lines on pages of 8 to 16: two pages at least
    folder = tmp_path / "in"
    raw_scan(sorted((gt / "pages").glob("*.xml"))[0], folder, tmp_path / "truth")
    shutil.copy(sorted((gt / "pages").glob("*.xml"))[1], folder / "xml-page.xml")
    shutil.copy(sorted((gt / "pages").glob("*.jpg"))[1], folder)
    shutil.copy(sorted((gt / "lines").glob("*.png"))[0], folder / "line.png")
    blla = Path(str(resources.files("kraken").joinpath("blla.mlmodel")))
    shutil.copy(blla, tmp_path / "my-segmenter.mlmodel")  # "the user's own" model, shipped with the job
    out = tmp_path / "out"
    cfg = fleet_config(tmp_path, batch_pages=3, visibility_s=10, idle_exit_s=10)
    result = CliRunner().invoke(app, ["--db", sqlite_db, "--config", str(cfg), "infer", str(folder),
                                      "--model", str(model), "--out", str(out), "--gpu", "t4",
                                      "--instances", "1", "--yes", "--format", "json",
                                      "--segment-model", str(tmp_path / "my-segmenter.mlmodel")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "done" and data["done"] == 3 and not data["dead"]
    assert data["segmented"] == 1 and data["segment_s"] > 0  # the worker reported its layout time
    assert data["plan"]["scans"] == 1 and data["plan"]["options"]["t4"]["segment_s_per_page"] > 0

    scan = sorted(folder.glob("page_*.jpg"))[0]
    xml = out / scan.with_suffix(".xml").name
    assert validate_page(xml) == []
    found = xml.read_text().count("<TextLine")
    truth = (tmp_path / "truth" / scan.with_suffix(".xml").name).read_text().count("<TextLine")
    assert found and abs(found - truth) <= 1
    assert len(xml.with_suffix(".txt").read_text().splitlines()) == found
    assert "TextEquiv" in (out / "xml-page.xml").read_text() and (out / "line.txt").exists()
    manifest = {json.loads(x)["page"] for x in (out / ".gpuhire" / "manifest.jsonl").read_text().splitlines()}
    assert manifest == {scan.name, "xml-page.xml", "line.png"}

    s3 = boto3.client("s3", region_name=REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert f"jobs/{data['job']}/segment/my-segmenter.mlmodel" in keys
