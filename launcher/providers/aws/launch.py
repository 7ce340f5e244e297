"""Launching one job's instance on AWS, locked down, with capacity fallback and a ledger trail.

For each attempt, in order: write the ledger session (state `launching`, the price in force)
BEFORE RunInstances; call RunInstances with a client token derived from that session, so a
retried call never launches twice; attach the instance id to the session as soon as it exists.
A capacity error discards that attempt's session (nothing was rented), records a
LaunchAttempt row and moves on: next offer in rank order (zone, then type), then on-demand if
the policy allows. An offer in a zone without a default subnet is skipped (recorded as
`skipped`, code NoDefaultSubnet). A crash at any point leaves either a `launching` row
(reconciled by `gpuhire gc`) or an instance tagged with its session id (found and terminated
by `gpuhire gc`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from launcher.errors import CapacityError
from launcher.failpoints import failpoint
from launcher.providers.aws.client import CAPACITY_CODES, QUOTA_CODES, error_code, quota_fix, translate
from launcher.providers.aws.setup import TAG_JOB, TAG_OWNER
from launcher.providers.aws.types import Attempt, Market, Offer
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
from ledger.models import LaunchAttempt

TAG_SESSION = "gpuhire:session"
TAG_LAUNCHER = "launcher"  # session tag: host:pid of the process that launched it (for gc)
NO_SUBNET = "NoDefaultSubnet"  # our attempt code for a zone without a default subnet


@dataclass(frozen=True)
class LaunchPlan:
    """Everything RunInstances needs besides the offer: made once per launch."""

    job_id: str
    image_id: str
    root_device: str
    key_name: str
    group_ids: dict[str, str]  # vpc id -> security group id
    subnets: dict[str, tuple[str, str]]  # zone -> (subnet id, vpc id)
    user_data: str
    volume_gb: int
    owner: str
    instance_profile: str | None
    billing: BillingRules


def launcher_id() -> str:
    """This process, as gc recognises it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def tags(job_id: str, owner: str, session_id: int, resource: str) -> list[dict[str, str]]:
    values = {TAG_JOB: job_id, TAG_OWNER: owner, TAG_SESSION: str(session_id),
              "Name": f"gpuhire-{job_id}"}
    return [{"Key": k, "Value": v} for k, v in values.items()]


def run_request(plan: LaunchPlan, offer: Offer, session_id: int) -> dict[str, Any]:
    """The RunInstances arguments for one offer (see docs/aws.md, "what gets created")."""
    subnet_id, vpc_id = plan.subnets[offer.zone]
    request: dict[str, Any] = {
        "ImageId": plan.image_id,
        "InstanceType": offer.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": plan.key_name,
        "SubnetId": subnet_id,
        "SecurityGroupIds": [plan.group_ids[vpc_id]],
        "UserData": plan.user_data,
        # A box that shuts itself down (dead-man switch, job end) is terminated, not stopped.
        "InstanceInitiatedShutdownBehavior": "terminate",
        # IMDSv2 only; hop limit 2 so the job's container can still read the spot notice.
        "MetadataOptions": {
            "HttpTokens": "required", "HttpPutResponseHopLimit": 2, "HttpEndpoint": "enabled",
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": plan.root_device,
                "Ebs": {
                    "VolumeSize": plan.volume_gb, "VolumeType": "gp3", "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": tags(plan.job_id, plan.owner, session_id, kind)}
            for kind in ("instance", "volume")
        ],
        # Idempotency: the same session (= the same attempt) never launches twice.
        "ClientToken": f"gpuhire-{session_id}-{plan.job_id}"[:64],
    }
    if offer.market == Market.spot:
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate",
            },
        }
    if plan.instance_profile:
        request["IamInstanceProfile"] = {"Name": plan.instance_profile}
    return request


def _session(plan: LaunchPlan, offer: Offer, now: datetime) -> NewSession:
    return NewSession(
        provider="aws", gpu_model=offer.gpu, gpu_count=offer.gpu_count, start_at=now,
        usd_per_hour=offer.usd_per_hour, region=offer.region, zone=offer.zone,
        instance_type=offer.instance_type,
        market=str(offer.market), state="launching", volume_gb=plan.volume_gb,
        volume_type="gp3", public_ipv4=True, job_id=plan.job_id,
        tags={TAG_LAUNCHER: launcher_id()},
        on_demand_usd_per_hour=offer.on_demand_usd_per_hour,
    )


class _Skip:
    """Which remaining offers a quota error rules out."""

    def __init__(self) -> None:
        self.markets: set[Market] = set()
        self.max_vcpus: dict[Market, int] = {}

    def note(self, offer: Offer, code: str) -> None:
        if code == "MaxSpotInstanceCountExceeded":
            self.markets.add(offer.market)  # a regional count: no other spot offer fits either
        elif code == "VcpuLimitExceeded":  # only smaller types can still fit the quota
            self.max_vcpus[offer.market] = min(self.max_vcpus.get(offer.market, 10**6), offer.vcpus - 1)

    def skips(self, offer: Offer) -> bool:
        limit = self.max_vcpus.get(offer.market)
        return offer.market in self.markets or (limit is not None and offer.vcpus > limit)


def launch_offers(
    ec2: Any,
    ledger: Ledger,
    plan: LaunchPlan,
    offers: list[Offer],
    now: Callable[[], datetime],
) -> tuple[dict[str, Any], int, Offer, tuple[Attempt, ...]]:
    """Try the offers in order; return (instance description, session id, offer, attempts)."""
    attempts: list[Attempt] = []
    skip = _Skip()
    for offer in offers:
        if skip.skips(offer):
            continue
        if offer.zone not in plan.subnets:  # no default subnet there: nothing to launch into
            attempt = Attempt(offer.zone, offer.instance_type, offer.market, "skipped", NO_SUBNET,
                              f"no default subnet in {offer.zone}")
            attempts.append(attempt)
            _record(ledger, plan, offer, attempt, None)
            continue
        session_id = ledger.record_session(_session(plan, offer, now()), plan.billing)
        failpoint("aws.session-written")
        try:
            reply = ec2.run_instances(**run_request(plan, offer, session_id))
        except Exception as exc:
            code = error_code(exc)
            if not code:
                raise  # not an AWS answer (network, credentials): the session stays for gc
            ledger.discard_launch(session_id)
            outcome = "capacity" if code in CAPACITY_CODES else "error"
            attempt = Attempt(offer.zone, offer.instance_type, offer.market, outcome, code,
                              str(exc)[:500])
            attempts.append(attempt)
            _record(ledger, plan, offer, attempt, None)
            if outcome == "error":
                raise translate(exc, f"launch {offer.instance_type} in {offer.zone}") from None
            skip.note(offer, code)
            continue
        instance = reply["Instances"][0]
        failpoint("aws.instance-launched")
        ledger.set_instance(session_id, instance["InstanceId"])
        attempt = Attempt(offer.zone, offer.instance_type, offer.market, "launched")
        attempts.append(attempt)
        _record(ledger, plan, offer, attempt, session_id)
        return instance, session_id, offer, tuple(attempts)
    raise capacity_error(plan.job_id, offers, attempts)


def _record(ledger: Ledger, plan: LaunchPlan, offer: Offer, attempt: Attempt,
            session_id: int | None) -> None:
    ledger.record_attempt(
        LaunchAttempt(
            job_id=plan.job_id, session_id=session_id, provider="aws", region=offer.region,
            zone=offer.zone, instance_type=offer.instance_type, market=str(offer.market),
            outcome=attempt.outcome, error_code=attempt.error_code, message=attempt.message,
        )
    )


def capacity_error(job_id: str, offers: list[Offer], attempts: list[Attempt]) -> CapacityError:
    """The final error: what was tried, why each failed, and what to do."""
    if not attempts:
        return CapacityError(
            f"no offer to launch for job {job_id}",
            "check `gpuhire offers` and [aws] instance_types and region",
        )
    tried = [f"{a.market} {a.instance_type} in {a.zone} ({a.error_code})" for a in attempts[:8]]
    more = f" and {len(attempts) - 8} more" if len(attempts) > 8 else ""
    codes = {a.error_code for a in attempts}
    fixes = [quota_fix(c) for c in sorted(codes & QUOTA_CODES)[:1]]
    if codes - QUOTA_CODES - {NO_SUBNET}:
        fixes.append(quota_fix("InsufficientInstanceCapacity"))
    if NO_SUBNET in codes:
        bare = sorted({a.zone for a in attempts if a.error_code == NO_SUBNET})
        fixes.append("create a default subnet there (`aws ec2 create-default-subnet "
                     f"--availability-zone {bare[0]}`)")
    if all(a.market == Market.spot for a in attempts):
        fixes.append("or set [aws] fallback_on_demand = true")
    return CapacityError("no capacity: tried " + "; ".join(tried) + more, "; ".join(fixes))
