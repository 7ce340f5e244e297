"""A launcher killed between the ledger write and the launch -> `gpuhire gc --yes` reconciles.

The launcher is a real subprocess talking to a moto server on loopback (AWS_ENDPOINT_URL);
a test hook makes it stop at the chosen point, and the test kills it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_fakes import AMI_PARAMETER, OPERATOR, REGION, AwsWorld, put_ami_parameter

from launcher.ssh.keys import job_ids_with_keys
from ledger.book import Ledger
from ledger.db import open_engine

LAUNCHER = """
import json, sys
from launcher.config import Settings
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.types import LaunchRequest
from ledger.book import Ledger
from ledger.db import open_engine


settings = Settings.model_validate(json.loads(sys.argv[1]))
provider = AwsCloud(settings, Ledger(open_engine(sys.argv[2])))
provider.launch(LaunchRequest(sys.argv[3], "t4", tuple(provider.offers("t4"))))
print("launched")
"""


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def endpoint(moto_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


def _clients() -> tuple:
    ec2 = boto3.client("ec2", region_name=REGION)
    return ec2, boto3.client("ssm", region_name=REGION)


def _run_killed_launcher(point: str, db: str, job: str, tmp: Path) -> None:
    put_ami_parameter()
    settings = {"aws": {"operator_cidrs": [OPERATOR], "ami_parameter": AMI_PARAMETER}}
    marker = tmp / f"{point}.reached"
    env = {**os.environ, "GPUHIRE_FAILPOINTS": f"aws.{point}=pause({marker})"}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps(settings), db, job], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"launcher exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("launcher never reached " + point)
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def _live_instances(ec2) -> list[str]:
    out = []
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] not in ("terminated", "shutting-down"):
                out.append(i["InstanceId"])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("point", ["session-written", "instance-launched"])
def test_gc_reconciles_a_killed_launch(point: str, endpoint: str, world: AwsWorld, cli, tmp_path: Path) -> None:
    job = f"job-crash-{point}"
    _run_killed_launcher(point, cli.db, job, tmp_path)
    book = Ledger(open_engine(cli.db))
    ec2, _ = _clients()
    open_rows = [v.session for v in book.sessions(open_only=True)]
    assert [(r.state, r.instance_id) for r in open_rows] == [("launching", None)]
    assert len(_live_instances(ec2)) == (1 if point == "instance-launched" else 0)
    assert job_ids_with_keys() == [job]

    dry = cli("gc", "--dry-run", env={"COLUMNS": "200"})
    assert dry.exit_code == 0 and "session" in dry.stdout and "key-pair" in dry.stdout
    assert len(book.sessions(open_only=True)) == 1  # a dry run changes nothing

    result = cli("gc", "--yes", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "removed" in result.stdout
    assert _live_instances(ec2) == []
    assert book.sessions(open_only=True) == []
    sessions = book.sessions()
    if point == "instance-launched":  # a machine existed: its session is closed and costed
        assert len(sessions) == 1 and sessions[0].session.end_reason == "user"
        assert sessions[0].session.instance_id is not None
    else:  # no machine ever existed: nothing to bill
        assert sessions == []
    assert not [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("gpuhire-")]
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]
    assert job_ids_with_keys() == []
    assert cli("gc", "--yes").stdout.strip() == "nothing to collect"


def test_gc_leaves_a_live_job_alone(endpoint: str, world: AwsWorld, cli, tmp_path: Path) -> None:
    from aws_fakes import aws_settings

    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.aws.types import LaunchRequest

    put_ami_parameter()
    book = Ledger(open_engine(cli.db))
    provider = AwsCloud(aws_settings(), book)
    launched = provider.launch(LaunchRequest("job-live", "t4", tuple(provider.offers("t4"))))
    result = cli("gc", "--yes")
    assert result.stdout.strip() == "nothing to collect"
    status = cli("status", "--format", "json")
    rows = json.loads(status.stdout)
    assert [(r["job"], r["instance_id"], r["session_id"]) for r in rows] == [
        ("job-live", launched.instance.instance_id, launched.session_id)]
    assert rows[0]["usd_so_far"] is not None

    stopped = cli("stop", "job-live")
    assert stopped.exit_code == 0 and stopped.stdout.strip() == "job-live: 1 instance(s) terminated"
    assert book.get_job("job-live").status == "stopped"
    assert book.sessions(open_only=True) == []
    assert cli("status").stdout.strip() == "nothing running"


def test_stop_usage_errors(cli) -> None:
    result = cli("stop")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: give a JOB or --all (not both); e.g. gpuhire stop JOB, or gpuhire stop --all"


def test_gc_ignores_sessions_it_did_not_launch(make_provider, world: AwsWorld, book: Ledger) -> None:
    from datetime import timedelta
    from decimal import Decimal

    from launcher.providers.aws import gc as aws_gc
    from ledger.book import NewSession
    from ledger.catalogue import BUILTIN_PROVIDERS
    from ledger.timeutil import utcnow

    start = utcnow() - timedelta(hours=3)
    hand = NewSession("aws", "t4", start, Decimal("0.2"), region="us-east-1")  # `ledger add`
    elsewhere = NewSession("aws", "t4", start, Decimal("0.2"), region="eu-west-1",
                           instance_id="i-0123456789abcdef0")
    ids = book.record_sessions([(hand, BUILTIN_PROVIDERS["aws"]), (elsewhere, BUILTIN_PROVIDERS["aws"])])
    provider = make_provider()
    assert aws_gc.plan(provider).leftovers == []
    assert provider.close_sessions() == []
    assert {v.session.id for v in book.sessions(open_only=True)} == set(ids)


def test_stop_all_and_gc_asks_first(moto, world: AwsWorld, cli) -> None:
    from aws_fakes import aws_settings, put_ami_parameter

    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.aws.types import LaunchRequest

    put_ami_parameter()
    book = Ledger(open_engine(cli.db))
    provider = AwsCloud(aws_settings(), book)
    for job in ("job-a", "job-b"):
        provider.launch(LaunchRequest(job, "t4", tuple(provider.offers("t4"))))
    book.update_job("job-b", status="done")  # its launcher finished but never released it

    asked = cli("gc")  # not a terminal and no --yes: refuses instead of guessing
    assert asked.exit_code == 2 and "pass --yes" in asked.stderr
    assert len(book.sessions(open_only=True)) == 2

    refused = cli("stop", "--all")
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr
    result = cli("stop", "--all", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["job-a: 1 instance(s) terminated", "job-b: 1 instance(s) terminated"]
    assert book.sessions(open_only=True) == []
    assert {v.session.end_reason for v in book.sessions()} == {"user"}
    assert cli("stop", "--all").stdout.strip() == "nothing to stop"


def test_gc_leaves_other_owners_alone_unless_asked(moto, world: AwsWorld, cli) -> None:
    from aws_fakes import MOTO_AMI

    ec2 = boto3.client("ec2", region_name=REGION)
    tags = [{"Key": "gpuhire:job", "Value": "job-colleague"}, {"Key": "gpuhire:owner", "Value": "colleague"}]
    iid = ec2.run_instances(ImageId=MOTO_AMI, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge",
                            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
                            )["Instances"][0]["InstanceId"]
    # a colleague's job, in their own ledger: not ours to judge
    assert cli("gc", "--yes").stdout.strip() == "nothing to collect"
    assert _live_instances(ec2) == [iid]
    result = cli("gc", "--yes", "--all-owners", env={"COLUMNS": "200"})
    assert result.exit_code == 0 and iid in result.stdout
    assert _live_instances(ec2) == []


def test_group_in_use_is_left_for_gc_with_a_note(moto, world: AwsWorld, cli) -> None:
    from aws_fakes import aws_settings, put_ami_parameter

    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.aws.types import LaunchRequest

    put_ami_parameter()
    book = Ledger(open_engine(cli.db))
    provider = AwsCloud(aws_settings(), book)
    provider.launch(LaunchRequest("job-dv", "t4", tuple(provider.offers("t4"))))
    # Real EC2 refuses to delete a group while its instance is still shutting down.
    world.errors["DeleteSecurityGroup"] = ["DependencyViolation"]
    result = cli("stop", "job-dv")
    assert result.exit_code == 0 and result.stdout.strip() == "job-dv: 1 instance(s) terminated"
    assert "note: job-dv: security-group sg-" in result.stderr and "gpuhire gc" in result.stderr
    ec2 = boto3.client("ec2", region_name=REGION)
    assert len(ec2.describe_security_groups()["SecurityGroups"]) == 2
    assert cli("gc", "--yes").exit_code == 0
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]
