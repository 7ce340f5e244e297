"""Benchmark: how long the AWS fleet takes to get N workers running, N = 1 and N = 8, side by side.

    python bench/bench_fleet_launch.py [--boot-s 3] [--instances 8] [--api-ms 60]

Against a moto server on loopback (ThreadedMotoServer: real HTTP, so boto3's threads really
overlap). moto puts an instance in `running` the moment RunInstances returns, which would hide
what matters: on EC2 a g4dn spends about a minute `pending`. So a botocore event hook on the
launcher's EC2 client simulates boot: every DescribeInstances answer shows an instance as
`pending` (no public address) until `--boot-s` seconds after its RunInstances returned, and each
RunInstances call takes `--api-ms` more (EC2 answers it in ~0.5-2 s; moto in milliseconds). The
launcher polls every 0.25 s here (5 s against EC2). Everything else (ledger writes in SQLite, the
key pair, the security group, the AMI) is the real launch path.

Target: the launch of 8 boxes within 1.5x of the launch of one (the boxes boot in parallel).
Launched one after another, 8 boxes took 8 boot times.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from typing import Any


def boot_delay(session: Any, boot_s: float, api_ms: float) -> None:
    """Make `running` appear `boot_s` after each RunInstances (see the module docstring)."""
    launched: dict[str, float] = {}
    lock = threading.Lock()

    def after_run(parsed: dict[str, Any], **_: Any) -> None:
        time.sleep(api_ms / 1000)
        with lock:
            for inst in parsed.get("Instances", []):
                launched[inst["InstanceId"]] = time.monotonic()

    def after_describe(parsed: dict[str, Any], **_: Any) -> None:
        now = time.monotonic()
        for reservation in parsed.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                with lock:
                    at = launched.get(inst["InstanceId"])
                if at is not None and now - at < boot_s and inst["State"]["Name"] == "running":
                    inst["State"] = {"Code": 0, "Name": "pending"}
                    inst.pop("PublicIpAddress", None)

    session.events.register("after-call.ec2.RunInstances", after_run)
    session.events.register("after-call.ec2.DescribeInstances", after_describe)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boot-s", type=float, default=3.0, help="simulated boot time per instance")
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--api-ms", type=float, default=60.0, help="simulated RunInstances latency")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1", XDG_DATA_HOME=tmp)
    import boto3
    from moto.server import ThreadedMotoServer

    from launcher.config import Settings
    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.aws.fleet import AwsFleet
    from launcher.providers.aws.types import LaunchRequest
    from launcher.providers.base import FleetSettings, Queues, WorkerSpec
    from ledger.book import Ledger
    from ledger.db import open_engine

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        boto3.client("iam", region_name="us-east-1").create_instance_profile(InstanceProfileName="bench")
        ami = boto3.client("ec2", region_name="us-east-1").describe_images(ImageIds=["ami-03cf127a"])
        settings = Settings.model_validate({"aws": {
            "ami_id": ami["Images"][0]["ImageId"], "operator_cidrs": ["198.51.100.23/32"],
            "instance_profile": "bench"}})
        ledger = Ledger(open_engine(f"sqlite:///{tmp}/ledger.db"))
        queues = Queues("https://sqs.bench/1/w", "https://sqs.bench/1/d", "https://sqs.bench/1/o")
        results: dict[int, float] = {}
        for n in (1, args.instances):
            session = boto3.Session(region_name="us-east-1")
            boot_delay(session, args.boot_s, args.api_ms)
            cloud = AwsCloud(settings, ledger, session=session)
            cloud.running_poll_s = 0.25
            fleet = AwsFleet(WorkerSpec(f"bench-fleet-{n}", "bench", queues, FleetSettings()), cloud, "t4",
                             "gpuhire-htr:bench")
            started = time.perf_counter()
            fleet.start(n)
            results[n] = time.perf_counter() - started
            assert fleet.alive() == n, fleet.notes
            fleet.stop("completed")
        # The old way, for comparison: one launch after another, each waiting for `running`.
        session = boto3.Session(region_name="us-east-1")
        boot_delay(session, args.boot_s, args.api_ms)
        cloud = AwsCloud(settings, ledger, session=session)
        cloud.running_poll_s = 0.25
        started = time.perf_counter()
        for _ in range(args.instances):
            cloud.launch(LaunchRequest("bench-serial", "t4", tuple(cloud.offers("t4")), job_kind="infer"))
        serial = time.perf_counter() - started
        cloud.release("bench-serial", "completed")
    finally:
        server.stop()
    one, many = results[1], results[args.instances]
    print(f"simulated boot {args.boot_s:.1f} s, RunInstances +{args.api_ms:.0f} ms, polled every 0.25 s")
    print(f"N = 1: {one:.2f} s   N = {args.instances}: {many:.2f} s   ratio {many / one:.2f}x "
          "(target <= 1.5x)")
    print(f"N = {args.instances} one after another (before): {serial:.2f} s   ratio {serial / one:.2f}x")


if __name__ == "__main__":
    main()
