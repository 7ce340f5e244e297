"""Launch: what the RunInstances request asks for, read back from moto, and the ledger trail."""

from __future__ import annotations

import base64
import stat
from decimal import Decimal

import boto3
import pytest
from aws_fakes import OPERATOR, REGION, AwsWorld, aws_settings

from launcher.errors import ConfigError
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.types import LaunchRequest, Market
from ledger.book import Ledger


def _instance(iid: str) -> dict:
    ec2 = boto3.client("ec2", region_name=REGION)
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def test_launch_is_locked_down(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(volume_gb=60)
    offers = provider.offers("t4")
    launched = provider.launch(LaunchRequest("job-lock", "t4", tuple(offers), volume_gb=80))
    d = _instance(launched.instance.instance_id)
    ec2 = boto3.client("ec2", region_name=REGION)

    # one-time spot in the cheapest zone and type
    assert d["InstanceLifecycle"] == "spot"
    assert (d["InstanceType"], d["Placement"]["AvailabilityZone"]) == ("g4dn.2xlarge", "us-east-1b")
    params = world.run_params[0]
    assert params["InstanceMarketOptions"]["SpotOptions"]["SpotInstanceType"] == "one-time"
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"
    # IMDSv2 only, reachable from containers
    assert d["MetadataOptions"]["HttpTokens"] == "required"
    assert d["MetadataOptions"]["HttpPutResponseHopLimit"] == 2
    # encrypted gp3 root volume of the requested size, tagged like the instance
    vol_id = d["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    vol = ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"][0]
    assert (vol["Encrypted"], vol["VolumeType"], vol["Size"]) == (True, "gp3", 80)
    for tags in (d["Tags"], vol["Tags"]):
        t = {x["Key"]: x["Value"] for x in tags}
        assert t["gpuhire:job"] == "job-lock" and t["gpuhire:owner"]
        assert t["gpuhire:session"] == str(launched.session_id)
    # SSH only from the operator's /32, nothing else in
    group = ec2.describe_security_groups(GroupIds=[d["SecurityGroups"][0]["GroupId"]])["SecurityGroups"][0]
    assert group["IpPermissions"] == [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "UserIdGroupPairs": [],
         "IpRanges": [{"CidrIp": OPERATOR, "Description": "gpuhire operator"}],
         "Ipv6Ranges": [], "PrefixListIds": []}
    ]
    # per-job ed25519 key: AWS has the public half, the private half is 0600 here
    assert d["KeyName"] == "gpuhire-job-lock"
    pair = ec2.describe_key_pairs(KeyNames=["gpuhire-job-lock"])["KeyPairs"][0]
    assert pair["KeyType"] == "ed25519"
    assert stat.S_IMODE(launched.ssh.key_path.stat().st_mode) == 0o600
    assert launched.ssh.host_key.startswith("ssh-ed25519 ")
    # idempotency token bound to the ledger session of this attempt
    assert params["ClientToken"] == f"gpuhire-{launched.session_id}-job-lock"
    # the user-data carries the safety scripts and the pinned host key
    user_data = base64.b64decode(params["UserData"]).decode()  # botocore encodes it
    assert "deadman.sh" in user_data and "spot-watch.sh" in user_data
    assert "OPENSSH PRIVATE KEY" in user_data

    # ledger: the session has the instance, the spot price in force and the attempt
    row = book.get_session(launched.session_id)
    assert row.instance_id == launched.instance.instance_id and row.state == "running"
    assert (row.market, row.zone, row.instance_type, row.volume_gb) == ("spot", "us-east-1b", "g4dn.2xlarge", 80)
    view = book.sessions(open_only=True)[0]
    assert view.usd_per_hour == Decimal("0.1800")
    assert [(a.outcome, a.session_id) for a in book.attempts("job-lock")] == [("launched", launched.session_id)]


def test_session_written_before_run_instances(make_provider, world: AwsWorld, book: Ledger) -> None:
    seen = []
    world.before_run.append(lambda params: seen.extend(
        (v.session.state, v.session.instance_id) for v in book.sessions(open_only=True)))
    provider = make_provider()
    provider.launch(LaunchRequest("job-order", "t4", tuple(provider.offers("t4"))))
    assert seen == [("launching", None)]


def test_on_demand_request_has_no_market_options(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(volume_gb=64)  # no size in the request: [aws] volume_gb
    od = provider.on_demand_offers("t4")
    launched = provider.launch(LaunchRequest("job-od", "t4", tuple(od[:1]), allow_on_demand=False))
    assert "InstanceMarketOptions" not in world.run_params[0]
    assert launched.offer.market == Market.on_demand
    assert _instance(launched.instance.instance_id).get("InstanceLifecycle") is None
    assert book.sessions(open_only=True)[0].usd_per_hour == Decimal("0.526")
    assert world.run_params[0]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] == 64
    assert book.sessions(open_only=True)[0].session.volume_gb == 64


def test_operator_address_detected_when_not_configured(moto, world: AwsWorld, book: Ledger) -> None:
    from aws_fakes import put_ami_parameter

    put_ami_parameter()
    settings = aws_settings(operator_cidrs=[])
    provider = AwsCloud(settings, book, detect_cidr=lambda: "203.0.113.9/32")
    launched = provider.launch(LaunchRequest("job-detect", "t4", tuple(provider.offers("t4"))))
    group_id = _instance(launched.instance.instance_id)["SecurityGroups"][0]["GroupId"]
    group = boto3.client("ec2", region_name=REGION).describe_security_groups(GroupIds=[group_id])
    assert group["SecurityGroups"][0]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] == "203.0.113.9/32"


def test_wide_cidr_refused(make_provider) -> None:
    provider = make_provider(operator_cidrs=["10.0.0.0/8"])
    with pytest.raises(ConfigError, match=r"SSH would be open to 10\.0\.0\.0/8"):
        provider.launch(LaunchRequest("job-wide", "t4", tuple(provider.offers("t4"))))


def test_missing_ami_parameter_is_clear(make_provider, book: Ledger) -> None:
    provider = make_provider(ami_parameter="/gpuhire-test/retired/ami-id")
    with pytest.raises(ConfigError) as err:
        provider.launch(LaunchRequest("job-ami", "t4", tuple(provider.offers("t4"))))
    assert "/gpuhire-test/retired/ami-id does not exist" in str(err.value)
    assert "[aws] ami_parameter" in str(err.value)
    assert book.sessions() == []  # nothing recorded: nothing was rented


def test_config_rejects_bad_aws_values() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a CIDR"):
        aws_settings(operator_cidrs=["203.0.113.9"])
    with pytest.raises(ValidationError):
        aws_settings(colour="blue")  # unknown key


def _left_running() -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    return [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] not in ("terminated", "shutting-down")]


def test_ctrl_c_while_waiting_for_running_terminates_the_instance(make_provider, world: AwsWorld,
                                                                   book: Ledger) -> None:
    provider = make_provider()
    offers = provider.offers("t4")
    pressed: list[bool] = []

    def ctrl_c(**_: object) -> None:  # the user presses Ctrl-C while the waiter polls
        if not pressed:
            pressed.append(True)
            raise KeyboardInterrupt

    provider.ec2.meta.events.register("before-call.ec2.DescribeInstances", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        provider.launch(LaunchRequest("job-ctrlc", "t4", tuple(offers)))
    assert pressed and _left_running() == []
    (view,) = book.sessions(job_id="job-ctrlc")
    assert view.session.instance_id and view.session.end_reason == "user" and not view.running


def test_instance_without_public_address_is_terminated(make_provider, world: AwsWorld,
                                                       book: Ledger) -> None:
    from launcher.errors import ProviderError

    provider = make_provider()  # no [aws] ssh_targets: the public address is needed

    def no_address(parsed: dict, **_: object) -> None:  # e.g. a subnet without public IPs
        for r in parsed.get("Reservations", []):
            for i in r["Instances"]:
                i.pop("PublicIpAddress", None)

    provider.ec2.meta.events.register("after-call.ec2.DescribeInstances", no_address)
    with pytest.raises(ProviderError, match="has no public address"):
        provider.launch(LaunchRequest("job-noip", "t4", tuple(provider.offers("t4"))))
    assert _left_running() == []
    (view,) = book.sessions(job_id="job-noip")
    assert view.session.end_reason == "user" and not view.running
