"""Capacity fallback (errors injected on RunInstances), the final message, throttling retried."""

from __future__ import annotations

import boto3
import pytest
from aws_fakes import REGION, AwsWorld

from launcher.errors import CapacityError, ProviderError
from launcher.providers.aws.types import LaunchRequest, Market
from ledger.book import Ledger


def _instances() -> list[str]:
    ec2 = boto3.client("ec2", region_name=REGION)
    return [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def test_fallback_next_zone_then_type_then_on_demand(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(fallback_on_demand=True)
    offers = provider.offers("t4")  # 1b 2xlarge, 1b xlarge, 1a xlarge, 1c 4xlarge
    world.run_errors = ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow",
                        "InsufficientInstanceCapacity", "InsufficientInstanceCapacity"]
    launched = provider.launch(LaunchRequest("job-fb", "t4", tuple(offers)))
    tried = [(p["InstanceType"], "InstanceMarketOptions" in p) for p in world.run_params]
    assert tried == [("g4dn.2xlarge", True), ("g4dn.xlarge", True), ("g4dn.xlarge", True),
                     ("g4dn.4xlarge", True), ("g4dn.xlarge", False)]
    assert launched.offer.market == Market.on_demand and launched.offer.instance_type == "g4dn.xlarge"
    # each capacity error (HTTP 500 from EC2) moved on at once: one request per attempt, no retry
    assert world.sends["RunInstances"] == 5
    assert len(_instances()) == 1  # the refused attempts launched nothing
    rows = book.attempts("job-fb")
    assert [(a.zone, a.instance_type, a.market, a.outcome, a.error_code) for a in rows] == [
        ("us-east-1b", "g4dn.2xlarge", "spot", "capacity", "InsufficientInstanceCapacity"),
        ("us-east-1b", "g4dn.xlarge", "spot", "capacity", "SpotMaxPriceTooLow"),
        ("us-east-1a", "g4dn.xlarge", "spot", "capacity", "InsufficientInstanceCapacity"),
        ("us-east-1c", "g4dn.4xlarge", "spot", "capacity", "InsufficientInstanceCapacity"),
        ("us-east-1a", "g4dn.xlarge", "on-demand", "launched", ""),
    ]
    # failed attempts leave no session behind (nothing was rented, nothing is billed)
    sessions = book.sessions()
    assert len(sessions) == 1 and sessions[0].session.market == "on-demand"
    assert rows[-1].session_id == sessions[0].session.id


def test_no_capacity_anywhere_names_what_was_tried(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(fallback_on_demand=False)
    world.run_errors = ["InsufficientInstanceCapacity"] * 4
    with pytest.raises(CapacityError) as err:
        provider.launch(LaunchRequest("job-none", "t4", tuple(provider.offers("t4"))))
    text = str(err.value)
    assert text.startswith("no capacity: tried spot g4dn.2xlarge in us-east-1b (InsufficientInstanceCapacity); "
                           "spot g4dn.xlarge in us-east-1b")
    assert "spot g4dn.4xlarge in us-east-1c" in text
    assert "[aws] fallback_on_demand = true" in text
    assert book.sessions() == [] and len(book.attempts("job-none")) == 4


def test_quota_errors_skip_what_cannot_fit(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(fallback_on_demand=False)
    # A vCPU quota hit on the 8-vCPU type rules out 8+ vCPUs, not the 4-vCPU ones;
    # then a spot count limit rules out every other spot offer.
    world.run_errors = ["VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"]
    with pytest.raises(CapacityError) as err:
        provider.launch(LaunchRequest("job-quota", "t4", tuple(provider.offers("t4"))))
    assert [p["InstanceType"] for p in world.run_params] == ["g4dn.2xlarge", "g4dn.xlarge"]
    assert 'request a higher "All G and VT Spot Instance Requests" quota' in str(err.value)


def test_other_client_errors_stop_at_once(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider()
    world.run_errors = ["UnauthorizedOperation"]
    with pytest.raises(ProviderError) as err:
        provider.launch(LaunchRequest("job-denied", "t4", tuple(provider.offers("t4"))))
    assert not isinstance(err.value, CapacityError)
    assert "attach the gpuhire user policy" in str(err.value)
    assert len(world.run_params) == 1 and book.sessions() == []
    assert world.sends["RunInstances"] == 1  # a client error is not retried


def test_throttling_is_retried(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider()
    offers = provider.offers("t4")
    world.throttle_next["RunInstances"] = 1  # the first HTTP answer is RequestLimitExceeded
    launched = provider.launch(LaunchRequest("job-throttle", "t4", tuple(offers)))
    assert world.throttle_next["RunInstances"] == 0  # the throttle was served...
    assert len(world.run_params) == 1  # one API call...
    assert world.sends["RunInstances"] == 2  # ...sent twice: botocore retried the throttled request
    assert _instances() == [launched.instance.instance_id]  # the throttled send launched nothing
    assert [a.outcome for a in book.attempts("job-throttle")] == ["launched"]
    assert book.get_session(launched.session_id).instance_id == launched.instance.instance_id


def _drop_default_subnet(zone: str) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    for s in ec2.describe_subnets()["Subnets"]:
        if s["AvailabilityZone"] == zone and s.get("DefaultForAz"):
            ec2.delete_subnet(SubnetId=s["SubnetId"])


def test_zone_without_default_subnet_is_skipped_and_recorded(make_provider, world: AwsWorld,
                                                              book: Ledger) -> None:
    provider = make_provider(fallback_on_demand=False)
    offers = provider.offers("t4")  # 1b 2xlarge, 1b xlarge, 1a xlarge, 1c 4xlarge
    _drop_default_subnet("us-east-1b")
    launched = provider.launch(LaunchRequest("job-subnet", "t4", tuple(offers)))
    assert launched.offer.zone == "us-east-1a"
    assert [p["InstanceType"] for p in world.run_params] == ["g4dn.xlarge"]  # 1b never asked
    rows = book.attempts("job-subnet")
    assert [(a.zone, a.outcome, a.error_code) for a in rows] == [
        ("us-east-1b", "skipped", "NoDefaultSubnet"), ("us-east-1b", "skipped", "NoDefaultSubnet"),
        ("us-east-1a", "launched", ""),
    ]


def test_no_default_subnet_in_any_offered_zone_is_a_clear_error(make_provider, world: AwsWorld,
                                                                 book: Ledger) -> None:
    provider = make_provider(fallback_on_demand=False)
    offers = [o for o in provider.offers("t4") if o.zone == "us-east-1b"]
    _drop_default_subnet("us-east-1b")
    with pytest.raises(ProviderError, match="no default subnet") as err:
        provider.launch(LaunchRequest("job-nosub", "t4", tuple(offers)))
    assert "create-default-vpc" in str(err.value.fix) or "create-default-subnet" in str(err.value.fix)
    # one zone of several lacking a subnet (a KeyError before): named with the fix
    offers = [o for o in provider.offers("t4") if o.zone in ("us-east-1b", "us-east-1c")]
    world.run_errors = ["InsufficientInstanceCapacity"]
    with pytest.raises(CapacityError) as err:
        provider.launch(LaunchRequest("job-nosub2", "t4", tuple(offers)))
    assert "spot g4dn.2xlarge in us-east-1b (NoDefaultSubnet)" in str(err.value)
    assert "aws ec2 create-default-subnet --availability-zone us-east-1b" in str(err.value)
    assert [p["InstanceType"] for p in world.run_params] == ["g4dn.4xlarge"]  # 1c only
