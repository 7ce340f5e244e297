"""`gpuhire gc` and inference fleets: the queues and staged objects of a fleet whose launcher died
go (its results stay for a rerun); a fleet whose launcher runs, whose instance runs, or whose
launcher on another host may still run is left alone. moto in-process, the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import boto3
from aws_fakes import AMI_PARAMETER, OPERATOR, REGION, aws_settings, no_detection, put_ami_parameter

from launcher.infer.queue import Fleet, existing_queues, job_prefix
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.types import LaunchRequest
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job
from ledger.timeutil import utcnow

BUCKET = "gpuhire-gc-test"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fleet_job(book: Ledger, job: str, *, pid: int, host: str | None = None, age_h: float = 0) -> None:
    book.create_job(Job(id=job, kind="infer", status="running", gpu_model="t4",
                        created_at=utcnow() - timedelta(hours=age_h),
                        spec={"fleet": "aws", "host": host or socket.gethostname(), "pid": pid}))


def _stage(job: str, tmp_path: Path) -> None:
    """What `gpuhire infer` made for a job: three queues, the model, pages, and one result."""
    s3, sqs = boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)
    fleet = Fleet(s3, sqs, BUCKET, job)
    fleet.create_queues()
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    fleet.upload_model(model)
    for name in ("a.png", "b.png"):
        s3.put_object(Bucket=BUCKET, Key=f"{job_prefix(job)}pages/{name}", Body=b"scan")
    s3.put_object(Bucket=BUCKET, Key=f"{job_prefix(job)}results/a.txt", Body=b"text")


def _keys(job: str) -> set[str]:
    s3 = boto3.client("s3", region_name=REGION)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=job_prefix(job)).get("Contents", [])
    return {o["Key"].removeprefix(job_prefix(job)) for o in listed}


def test_gc_takes_a_dead_fleets_queues_and_staged_objects_and_nothing_alive(moto, cli, tmp_path: Path) -> None:
    put_ami_parameter()
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    config = tmp_path / "config.toml"
    config.write_text(f'[aws]\nbucket = "{BUCKET}"\noperator_cidrs = ["{OPERATOR}"]\n'
                      f'ami_parameter = "{AMI_PARAMETER}"\n')
    cli.config = config
    book = Ledger(open_engine(cli.db))
    dead = _dead_pid()
    _fleet_job(book, "infer-dead", pid=dead)  # SIGKILLed launcher, workers gone
    _fleet_job(book, "infer-live", pid=os.getpid())  # its launcher runs (this process)
    _fleet_job(book, "infer-busy", pid=dead)  # launcher dead, but a worker's instance still runs
    _fleet_job(book, "infer-away", pid=dead, host="laptop-2", age_h=2)  # another host: trusted a while
    _fleet_job(book, "infer-lost", pid=dead, host="laptop-2", age_h=30)  # ... but not for ever
    for job in ("infer-dead", "infer-live", "infer-busy", "infer-away", "infer-lost"):
        _stage(job, tmp_path)
    cloud = AwsCloud(aws_settings(), book, detect_cidr=no_detection)
    cloud.launch(LaunchRequest("infer-busy", "t4", tuple(cloud.offers("t4")), job_kind="infer"))

    dry = cli("gc", "--dry-run", env={"COLUMNS": "250"})
    assert dry.exit_code == 0, dry.stderr
    assert "gpuhire-infer-dead-work" in dry.stdout and f"s3://{BUCKET}/jobs/infer-dead/" in dry.stdout
    assert "infer-lost" in dry.stdout
    for alive in ("infer-live", "infer-busy", "infer-away"):
        assert alive not in dry.stdout
    sqs = boto3.client("sqs", region_name=REGION)
    assert len(existing_queues(sqs, "infer-dead")) == 3  # a dry run deletes nothing

    result = cli("gc", "--yes", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.stderr
    assert "removed 10 leftover(s)" in result.stdout  # 2 x (3 queues, the staged objects, the job)
    for job in ("infer-dead", "infer-lost"):
        assert existing_queues(sqs, job) == []
        assert _keys(job) == {"results/a.txt"}  # the results stay for a rerun
        assert book.get_job(job).status == "failed" and book.get_job(job).ended_at is not None
    for job in ("infer-live", "infer-busy", "infer-away"):
        assert len(existing_queues(sqs, job)) == 3
        assert _keys(job) == {"model.pt", "pages/a.png", "pages/b.png", "results/a.txt"}
        assert book.get_job(job).status == "running"
    assert [i for i in cloud.instances("infer-busy") if not i.state.gone]  # the busy fleet's box runs on
    assert cli("gc", "--yes").stdout.strip() == "nothing to collect"
