"""Test plumbing for the AWS provider: seeded spot prices, injected AWS errors, and a
recorder of every AWS operation the provider calls (used by conftest.py and the tests).

Spot prices: moto answers describe_spot_price_history with 0.00001 USD dated 2006 for every
zone, and its backend has no way to seed others. So a `before-call` hook answers that ONE
operation with the test's price points (botocore stops at the first handler that returns a
response); every other call goes to moto.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from launcher.config import Settings
from launcher.providers.aws.client import CAPACITY_CODES
from ledger.timeutil import utcnow

REGION = "us-east-1"
OPERATOR = "198.51.100.23/32"


@dataclass
class AwsWorld:
    """What a test can change about the AWS it talks to."""

    prices: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # zone, type, usd, at
    calls: list[tuple[str, str]] = field(default_factory=list)  # (service, operation)
    run_params: list[dict[str, Any]] = field(default_factory=list)  # RunInstances requests
    run_errors: list[str] = field(default_factory=list)  # error codes RunInstances answers, in order
    sends: dict[str, int] = field(default_factory=dict)  # HTTP requests sent per operation
    errors: dict[str, list[str]] = field(default_factory=dict)  # other operations' error codes
    before_run: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    throttle_next: dict[str, int] = field(default_factory=dict)  # operation -> HTTP throttles to send

    def seed_default_prices(self) -> None:
        now = utcnow()
        old = now - timedelta(minutes=50)
        self.prices = [
            ("us-east-1a", "g4dn.xlarge", "0.2100", now - timedelta(minutes=5)),
            ("us-east-1a", "g4dn.xlarge", "0.1500", old),  # older point: must be ignored
            ("us-east-1b", "g4dn.xlarge", "0.1800", now - timedelta(minutes=3)),
            ("us-east-1b", "g4dn.2xlarge", "0.1800", now - timedelta(minutes=9)),  # tie: 8 vCPU wins
            ("us-east-1c", "g4dn.4xlarge", "0.4500", now - timedelta(minutes=1)),
            ("us-east-1e", "g4dn.xlarge", "0.0100", now - timedelta(minutes=2)),  # zone lacks g4dn
            ("us-east-1a", "g6.xlarge", "0.3100", now - timedelta(minutes=4)),
            ("us-east-1d", "g6.2xlarge", "0.2900", now - timedelta(minutes=4)),
        ]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _error_response(status: int, code: str) -> AWSResponse:
    body = (f"<Response><Errors><Error><Code>{code}</Code><Message>injected {code}</Message>"
            "</Error></Errors><RequestID>test</RequestID></Response>").encode()
    return AWSResponse("https://ec2.test/", status, {}, _Raw(body))  # type: ignore[arg-type]


def instrument(session: boto3.Session, world: AwsWorld) -> boto3.Session:
    """Attach the world's hooks to a boto3 session (inherited by its clients)."""
    events = session.events

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        world.calls.append((model.service_model.endpoint_prefix, model.name))
        if model.name == "RunInstances":
            for hook in world.before_run:
                hook(params)

    def spot_prices(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # botocore calls this specific handler before the generic recorder: record here.
        world.calls.append(("ec2", "DescribeSpotPriceHistory"))
        wanted = set(params.get("InstanceTypes", []))
        history = [
            {"AvailabilityZone": z, "InstanceType": t, "ProductDescription": "Linux/UNIX",
             "SpotPrice": p, "Timestamp": at}
            for z, t, p, at in world.prices if not wanted or t in wanted
        ]
        return AWSResponse("https://ec2.test/", 200, {}, None), {"SpotPriceHistory": history}  # type: ignore[arg-type]

    def http_errors(event_name: str, request: Any, **_: Any) -> AWSResponse | None:
        # At the HTTP level, as EC2 would answer: botocore parses it and its retry logic
        # (and ours on top) decides, exactly as in production.
        operation = event_name.rsplit(".", 1)[-1]  # before-send.ec2.RunInstances
        world.sends[operation] = world.sends.get(operation, 0) + 1
        code, status = "", 0
        if world.throttle_next.get(operation, 0) > 0:
            world.throttle_next[operation] -= 1
            code, status = "RequestLimitExceeded", 503
        else:
            queued = world.run_errors if operation == "RunInstances" else world.errors.get(operation, [])
            if queued:
                code = queued.pop(0)
                # EC2 sends capacity errors as server errors (HTTP 500), others as client errors.
                status = 500 if code in CAPACITY_CODES else 400
        if not code:
            return None
        # botocore hands a request to every before-send handler; moto's (in-process) would carry
        # it out too. A URL moto does not serve makes it step aside: the request never happened.
        request.url = "https://injected-error.invalid/"
        return _error_response(status, code)

    def keep_request(params: dict[str, Any], **_: Any) -> None:
        world.run_params.append(dict(params))  # the API parameters, before serialisation

    events.register_first("before-call", record)
    events.register("before-parameter-build.ec2.RunInstances", keep_request)
    events.register("before-call.ec2.DescribeSpotPriceHistory", spot_prices)
    events.register_first("before-send", http_errors)
    return session


MOTO_AMI = "ami-03cf127a"  # one of moto 5.2.5's built-in Amazon AMIs


def moto_ami() -> str:
    """A real moto AMI (looked up by id: listing all 1,300 of them takes seconds)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    if ec2.describe_images(ImageIds=[MOTO_AMI])["Images"]:
        return MOTO_AMI
    return str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


# moto reserves /aws/... names, so the tests publish the DLAMI id under a name of their own
# and configure [aws] ami_parameter to it (as a user would for a private AMI).
AMI_PARAMETER = "/gpuhire-test/deeplearning/ubuntu-24.04/ami-id"


def put_ami_parameter() -> str:
    """moto has no DLAMI parameters: publish one pointing at one of moto's AMIs."""
    ami = moto_ami()
    boto3.client("ssm", region_name=REGION).put_parameter(Name=AMI_PARAMETER, Value=ami, Type="String")
    return ami


def aws_settings(**aws: Any) -> Settings:
    base: dict[str, Any] = {"operator_cidrs": [OPERATOR], "ami_parameter": AMI_PARAMETER}
    base.update(aws)
    return Settings.model_validate({"aws": base})


def no_detection() -> str:
    raise AssertionError("operator address detection must not run when CIDRs are configured")


def usd(text: str) -> Decimal:
    return Decimal(text)
