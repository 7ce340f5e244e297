"""The AWS fleet backend on moto: one locked-down spot instance per worker, the worker in the
trainer image started by user-data, sessions under the job, an interrupted instance replaced,
every instance terminated and every session closed at the end."""

from __future__ import annotations

import base64

import boto3
import pytest
from aws_fakes import REGION, AwsWorld
from test_aws_interruption import interrupt

from launcher.errors import ConfigError
from launcher.providers.aws.fleet import AwsFleet
from launcher.providers.base import FleetSettings, Queues, WorkerSpec
from ledger.book import Ledger

QUEUES = Queues("https://sqs.example/1/gpuhire-job-work", "https://sqs.example/1/gpuhire-job-dead",
                "https://sqs.example/1/gpuhire-job-done")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/gpuhire-htr:0.1.0"


def _spec(job: str) -> WorkerSpec:
    return WorkerSpec(job, "gpuhire-bucket", QUEUES, FleetSettings(visibility_s=300, idle_exit_s=120))


def _user_data(instance_id: str) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(raw).decode()


def test_fleet_launches_replaces_and_releases(make_provider, world: AwsWorld, book: Ledger) -> None:
    boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName="gpuhire-box")
    provider = make_provider(instance_profile="gpuhire-box")
    fleet = AwsFleet(_spec("infer-fleet"), provider, "t4", IMAGE)
    fleet.start(2)
    assert fleet.alive() == 2 and fleet.started == 2
    instances = [i for i in provider.instances("infer-fleet") if not i.state.gone]
    assert len(instances) == 2 and all(i.market == "spot" for i in instances)
    views = book.sessions(job_id="infer-fleet")
    assert len(views) == 2 and all(v.session.end_at is None and v.session.market == "spot" for v in views)
    assert {v.session.instance_id for v in views} == {i.instance_id for i in instances}
    assert book.get_job("infer-fleet").kind == "infer"

    script = _user_data(instances[0].instance_id)
    assert "gpuhire-deadman.service" in script  # the safety scripts come first
    assert script.index("deadman.sh") < script.index("jobs.fleet.worker")
    assert f"docker login --username AWS --password-stdin {IMAGE.split('/', maxsplit=1)[0]}" in script
    assert f"--work-url {QUEUES.work}" in script and "--idle-exit 120" in script
    assert "shutdown -h now" in script.split("jobs.fleet.worker", 1)[1]  # powers off when done

    interrupt(instances[0].instance_id)
    assert fleet.alive() == 1
    ended = {v.session.instance_id: v.session for v in book.sessions(job_id="infer-fleet")}
    assert ended[instances[0].instance_id].end_reason == "spot-interruption"
    assert fleet.top_up(2) == 1 and fleet.alive() == 2 and fleet.started == 3

    fleet.stop("completed")
    assert not [i for i in provider.instances("infer-fleet") if not i.state.gone]
    reasons = sorted(v.session.end_reason or "" for v in book.sessions(job_id="infer-fleet"))
    assert reasons == ["completed", "completed", "spot-interruption"]


def test_fleet_needs_an_instance_profile(make_provider, world: AwsWorld, book: Ledger) -> None:
    fleet = AwsFleet(_spec("infer-noprofile"), make_provider(), "t4", IMAGE)
    with pytest.raises(ConfigError, match="instance_profile"):
        fleet.start(1)
    assert not book.sessions(job_id="infer-noprofile")  # refused before anything was rented


def _boot_gate(provider, count: int, order: list[str]) -> None:
    """EC2 as it boots: each instance shows `pending` until `count` RunInstances have returned
    (at most 20 s), so a launch that waits for `running` before the next RunInstances shows up
    in `order` as a `running` before the last `run`."""
    import threading
    import time

    lock = threading.Lock()
    launched: list[str] = []
    first = [0.0]

    def after_run(parsed, **_) -> None:
        with lock:
            launched.extend(i["InstanceId"] for i in parsed.get("Instances", []))
            order.append("run" if "Instances" in parsed else "refused")
            first[0] = first[0] or time.monotonic()

    def after_describe(parsed, **_) -> None:
        with lock:
            booted = len(launched) >= count or time.monotonic() - first[0] > 20
            for r in parsed.get("Reservations", []):
                for inst in r["Instances"]:
                    if inst["InstanceId"] in launched and inst["State"]["Name"] == "running":
                        if booted:
                            order.append("running")
                        else:
                            inst["State"] = {"Code": 0, "Name": "pending"}

    provider.ec2.meta.events.register("after-call.ec2.RunInstances", after_run)
    provider.ec2.meta.events.register("after-call.ec2.DescribeInstances", after_describe)
    provider.running_poll_s = 0.05


def test_fleet_launches_its_instances_in_parallel(make_provider, world: AwsWorld, book: Ledger) -> None:
    boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName="gpuhire-box")
    provider = make_provider(instance_profile="gpuhire-box")
    order: list[str] = []
    _boot_gate(provider, 3, order)
    fleet = AwsFleet(_spec("infer-parallel"), provider, "t4", IMAGE)
    fleet.start(3)
    assert order[:3] == ["run", "run", "run"]  # every box was asked for before the first one ran
    assert fleet.alive() == 3 and fleet.started == 3 and not fleet.notes
    views = book.sessions(job_id="infer-parallel")
    assert len(views) == 3 and {v.session.instance_id for v in views} == fleet.live
    assert world.calls.count(("ec2", "CreateSecurityGroup")) == 1  # one group for the whole fleet
    fleet.stop("completed")


def test_one_failed_launch_leaves_no_instance_of_the_fleet_running(make_provider, world: AwsWorld,
                                                                   book: Ledger) -> None:
    from launcher.errors import ProviderError

    boto3.client("iam", region_name=REGION).create_instance_profile(InstanceProfileName="gpuhire-box")
    provider = make_provider(instance_profile="gpuhire-box")
    _boot_gate(provider, 4, [])
    world.run_errors = ["UnauthorizedOperation"]  # one of the four RunInstances calls is refused
    fleet = AwsFleet(_spec("infer-broken"), provider, "t4", IMAGE)
    with pytest.raises(ProviderError, match=r"AWS denied permission .*\(UnauthorizedOperation"):
        fleet.start(4)
    assert not [i for i in provider.instances("infer-broken") if not i.state.gone]
    assert fleet.live == set() and fleet.alive() == 0
    assert all(v.session.end_at is not None for v in book.sessions(job_id="infer-broken"))
