"""A fleet whose launcher died works on without it; a rerun of the same `gpuhire infer` first
collects what it finished from the bucket and sends only what is missing.

The orphaned fleet is the launcher's real Fleet (records, queues, uploads) and the real Worker
in-process, recognising part of the pages with the real model; its launcher then "dies" (it
never collects). The rerun is the real CLI with local workers on a moto server."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import boto3
import pytest
from infer_env import BUCKET, REGION, fleet_config
from typer.testing import CliRunner

from jobs.fleet.worker import Worker
from launcher.cli import app
from launcher.infer.manifest import FleetRecords, Manifest
from launcher.infer.queue import Fleet
from launcher.providers.base import FleetSettings

pytestmark = pytest.mark.slow

ORPHAN = "infer-20261201-0900-dead"


def _orphaned_fleet(pages: list, model: Path, out: Path, finished: int, cache: Path) -> None:
    """A launcher sends every page, its worker finishes the first `finished`, the launcher dies."""
    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    fleet = Fleet(s3, sqs, BUCKET, ORPHAN, FleetSettings(batch_pages=5, visibility_s=30))
    FleetRecords(Manifest(out, model)).add(ORPHAN, BUCKET, pages)  # what flow.py writes first
    queues = fleet.create_queues()
    fleet.upload_model(model)
    fleet.upload_pages(pages)
    fleet.enqueue(pages[:finished])  # the rest was never reached: the launcher died queueing
    cache.mkdir()
    args = argparse.Namespace(bucket=BUCKET, job=ORPHAN, work_url=queues.work, done_url=queues.done,
                              visibility=30, retry_delay=0, idle_exit=1, device="cpu", int8=False,
                              cache=str(cache), pid_file="", name="orphan-worker", batch_timeout=600)
    assert Worker(s3, sqs, args).run() == 0


def _keys(prefix: str) -> set[str]:
    s3 = boto3.client("s3", region_name=REGION)
    return {o["Key"].removeprefix(prefix)
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])}


def test_a_rerun_collects_what_an_orphaned_fleet_finished_and_sends_the_rest(
        moto_server: str, pages: Path, model: Path, tmp_path: Path, sqlite_db: str) -> None:
    from jobs.htr.pages import list_pages

    page_list = list_pages([pages])
    out = tmp_path / "out"
    _orphaned_fleet(page_list, model, out, 10, tmp_path / "cache")
    assert {rel for p in page_list[:10] for rel in p.outputs} <= _keys(f"jobs/{ORPHAN}/results/")
    changed = page_list[0]  # a page changed since the orphan got it: its result is not this page's
    os.utime(changed.path, ns=(10**18, 10**18))
    finished, missing = page_list[1:10], [changed, *page_list[10:]]

    result = CliRunner().invoke(app, [
        "--db", sqlite_db, "--config", str(fleet_config(tmp_path, batch_pages=5, visibility_s=30, idle_exit_s=5)), "infer", str(pages), "--model", str(model),
        "--out", str(out), "--gpu", "t4", "--instances", "1", "--yes", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "done" and data["skipped"] == len(finished) and data["done"] == len(missing)
    assert f"collected {len(finished)} page(s) that fleet job {ORPHAN} finished" in result.stderr
    sent = _keys(f"jobs/{data['job']}/pages/")
    assert sent == {rel for p in missing for _, rel in p.files()}  # only what was missing went out

    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
               and ".gpuhire" not in p.relative_to(out).parts}
    assert written == {rel for p in page_list for rel in p.outputs}  # complete, nothing else
    entries = [json.loads(x) for x in (out / ".gpuhire" / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["page"] for e in entries) == sorted(p.key for p in page_list)
    assert {e["page"] for e in entries if e["job"] == ORPHAN} == {p.key for p in finished}
    assert not list((out / ".gpuhire" / "fleets").glob("*.jsonl"))  # both jobs are accounted for
