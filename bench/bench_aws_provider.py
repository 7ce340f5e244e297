"""Benchmark: the AWS provider's own cost per launch and per gc, against moto in-process.

    python bench/bench_aws_provider.py [--jobs 20]

moto answers in microseconds, so the figures are the launcher's side: API calls per launch
(each one a round trip to EC2 in real life, ~50-150 ms), seconds of our code per launch, and
the time `gc` takes to reconcile that many leftover jobs. Nothing here reaches AWS.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", XDG_DATA_HOME=tmp)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    from launcher.config import Settings
    from launcher.providers.aws import gc as aws_gc
    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.aws.types import LaunchRequest
    from ledger.book import Ledger
    from ledger.db import open_engine

    with mock_aws():
        calls: Counter[str] = Counter()
        session = boto3.Session(region_name="us-east-1")
        session.events.register("before-call", lambda model, **_: calls.update([model.name]))
        ami = boto3.client("ec2", region_name="us-east-1").describe_images(ImageIds=["ami-03cf127a"])
        settings = Settings.model_validate({"aws": {
            "ami_id": ami["Images"][0]["ImageId"], "operator_cidrs": ["198.51.100.23/32"]}})
        ledger = Ledger(open_engine(f"sqlite:///{tmp}/ledger.db"))
        provider = AwsCloud(settings, ledger, session=session)
        offers = provider.offers("t4")
        offer_calls = sum(calls.values())
        calls.clear()
        times = []
        for n in range(args.jobs):
            t = time.perf_counter()
            provider.launch(LaunchRequest(f"bench-{n}", "t4", tuple(offers)))
            times.append(time.perf_counter() - t)
        per_launch = sum(calls.values()) / args.jobs
        for n in range(args.jobs):  # every job ends without releasing: all leftovers
            ledger.update_job(f"bench-{n}", status="failed")
        t = time.perf_counter()
        found = aws_gc.plan(provider)
        aws_gc.collect(provider, found, wait_s=0)
        gc_s = time.perf_counter() - t
    print(f"offers: {offer_calls} API calls")
    print(f"launch: {per_launch:.1f} API calls each, median {statistics.median(times) * 1000:.0f} ms "
          f"of launcher time (moto in-process), max {max(times) * 1000:.0f} ms")
    print(f"gc: {len(found.leftovers)} leftovers of {args.jobs} jobs reconciled in {gc_s:.2f} s")


if __name__ == "__main__":
    main()
