"""`gpuhire train` on AWS with S3 staging, end to end on loopback: a moto SERVER as EC2, SSM,
STS and S3 (boto3 reaches it through AWS_ENDPOINT_URL), a real sshd as the instance, the real
trainer (tiny preset, `process` runtime), and [aws] bucket set as `make_renter` uses it.

The dataset goes up content-hashed to s3://BUCKET/data/<sha256>/ and the BOX fetches it with
curl from presigned URLs (the moto server logs who asked for what); checkpoints copied home
are kept in S3 under jobs/<job>/checkpoints/, tagged; a second job on the same data sends no
data again.
"""

from __future__ import annotations

import getpass
import json
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fakes import REGION, AwsWorld, instrument
from test_train_aws_e2e import InstanceBox

from jobs.htr.synth import synth
from launcher.providers.aws import client as aws_client
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.ops import AWS_OPERATIONS, STAGING_OPERATIONS
from launcher.providers.aws.provider import AwsProvider
from launcher.providers.aws.staging import MANIFEST, S3Stage, StagedData, tree_digest
from launcher.ssh.host import SshHost
from launcher.train.flow import train
from launcher.train.ground_truth import compile_ground_truth
from launcher.train.types import TrainDeps, TrainOptions, TrainResult
from ledger.book import Ledger

pytestmark = pytest.mark.slow

BUCKET = "gpuhire-e2e-staging"


@dataclass
class MotoServer:
    url: str
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)  # method, path, query, agent


@pytest.fixture
def moto_server(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """moto as a real HTTP server on loopback; its backends live in this process, so the
    interruption helper (test_aws_interruption.interrupt) works on it too."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    seen = MotoServer(f"http://{host}:{port}")
    wsgi = server._server  # moto 5.2.5: the werkzeug server; log each request it serves
    assert wsgi is not None
    app = wsgi.app

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        seen.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                              environ.get("QUERY_STRING", ""), environ.get("HTTP_USER_AGENT", "")))
        return app(environ, start_response)

    wsgi.app = logged
    urllib.request.urlopen(urllib.request.Request(f"{seen.url}/moto-api/reset", method="POST"),
                           timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", seen.url)
    yield seen
    server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> None:
    """Replaces conftest's in-process mock_aws: make_provider talks to the server."""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    """As conftest's, with S3 too: every operation called is in AWS_OPERATIONS (ec2, ssm,
    sts) or STAGING_OPERATIONS (s3)."""
    w = AwsWorld()
    w.seed_default_prices()
    real = aws_client.make_session
    monkeypatch.setattr(aws_client, "make_session", lambda s: instrument(real(s), w))
    monkeypatch.setattr("launcher.providers.aws.cloud.make_session", lambda s: instrument(real(s), w))
    yield w
    known = {**AWS_OPERATIONS, **STAGING_OPERATIONS}
    unknown = {(s, o) for s, o in w.calls if o not in known.get(s, frozenset())}
    assert not unknown, f"operations missing from AWS_OPERATIONS/STAGING_OPERATIONS: {sorted(unknown)}"


def _s3() -> Any:
    """The test's own S3 client (not instrumented: its calls are not the launcher's)."""
    return boto3.client("s3", region_name=REGION)


def _keys(prefix: str) -> dict[str, int]:
    found = _s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o["Size"] for o in found}


def _box_fetches(requests: list[tuple[str, str, str, str]], prefix: str) -> dict[str, str]:
    """The staged files curl (the box; boto3 says `Boto3/...`) GOT from the server: name -> query."""
    start = f"/{BUCKET}/{prefix}"
    return {path.removeprefix(start): query for method, path, query, agent in requests
            if method == "GET" and agent.startswith("curl/") and path.startswith(start)}


def test_train_stages_data_and_checkpoints_through_s3(
    make_provider: Callable[..., AwsCloud], world: AwsWorld, book: Ledger, tmp_path: Path,
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _s3().create_bucket(Bucket=BUCKET)
    synth(tmp_path / "gt", 120, seed=5)
    home = tmp_path / "box-home"
    sftp_puts: list[str] = []
    real_put = SshHost.put

    def put(self: SshHost, local: Path, remote: str) -> None:
        sftp_puts.append(remote)
        real_put(self, local, remote)

    monkeypatch.setattr(SshHost, "put", put)

    def run_job(job: str) -> tuple[TrainResult, list[StagedData], list[str], AwsCloud, Path]:
        box = InstanceBox(tmp_path / "instances" / job, job)
        world.before_run[:] = [box.boot]  # this job's RunInstances boots its box
        provider = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"},
                                 ssh_user=getpass.getuser(), bucket=BUCKET)
        stage = S3Stage(provider.client("s3"), BUCKET)  # as make_renter builds it
        staged: list[StagedData] = []
        real_put_dataset = stage.put_dataset

        def put_dataset(folder: Path) -> StagedData:
            staged.append(real_put_dataset(folder))
            return staged[-1]

        stage.put_dataset = put_dataset  # type: ignore[method-assign]
        renter = AwsProvider(provider, "t4", runtime="process", python=sys.executable,
                           ssh_deadline_s=20, workdir_root=str(home), stage=stage)
        said: list[str] = []
        deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True,
                         compile_dataset=compile_ground_truth)
        sftp_puts.clear()
        try:
            result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=2, yes=True,
                                        out=tmp_path / "runs" / job, job=job), deps)
        finally:
            box.kill()
        assert result.status == "done", (result.message, said)
        return result, staged, list(sftp_puts), provider, tmp_path / "runs" / job

    # -- first job: the data goes up to S3, the box fetches it from there ---------------------
    job = "train-e2e-s3"
    first_request = len(moto_server.requests)
    result, staged, puts, provider, run = run_job(job)
    assert (run / "model.pt").stat().st_size > 10_000  # the model came home

    digest, files = tree_digest(run / "dataset")
    (data,) = staged
    prefix = f"data/{digest}/"
    assert data.prefix == prefix and data.files == files
    assert data.sent_bytes == sum((run / "dataset" / n).stat().st_size for n in files) > 0
    assert _keys(prefix) == {**{n: (run / "dataset" / n).stat().st_size for n in files},
                             MANIFEST: _keys(prefix)[MANIFEST]}
    manifest = _s3().get_object(Bucket=BUCKET, Key=prefix + MANIFEST)["Body"].read()
    assert json.loads(manifest) == files

    # The box's copy came from S3: curl (not boto3) asked the server for every file, the
    # launcher sent no dataset over SFTP, and the copy is byte-identical.
    fetched = _box_fetches(moto_server.requests[first_request:], prefix)
    assert set(fetched) == set(files)
    # presigned with SigV4: S3 refuses SigV2 for buckets made since June 2020 (terraform's)
    assert all("X-Amz-Algorithm=AWS4-HMAC-SHA256" in q for q in fetched.values()), fetched
    assert not any(p == "dataset" or p.startswith("dataset/") for p in puts), puts
    box_copy = home / job / "dataset"
    assert {n: (box_copy / n).read_bytes() for n in files} == \
        {n: (run / "dataset" / n).read_bytes() for n in files}

    # Checkpoints: kept in S3 as they came home, tagged for the bucket's lifecycle.
    checkpoints = _keys(f"jobs/{job}/checkpoints/")
    assert "checkpoint.pt" in checkpoints, checkpoints
    for name in checkpoints:
        key = f"jobs/{job}/checkpoints/{name}"
        tags = _s3().get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
        assert {"Key": "gpuhire:kind", "Value": "checkpoint"} in tags, (name, tags)
    kept = _s3().get_object(Bucket=BUCKET, Key=f"jobs/{job}/checkpoints/checkpoint.pt")["Body"].read()
    assert kept == (run / "run" / "checkpoint.pt").read_bytes()

    # Settled: one session, closed and costed; the job done; nothing left running.
    (session,) = book.sessions(job_id=job)
    assert session.session.end_reason == "completed" and session.session.end_at is not None
    assert session.cost.compute_usd > 0 and result.usd == session.cost.total_usd
    assert book.get_job(job).status == "done"
    assert all(i.state.gone for i in provider.instances(job))

    # -- second job, same data: nothing sent again, the box still fetches it from S3 ----------
    job2 = "train-e2e-s3-again"
    second_request = len(moto_server.requests)
    result2, staged2, puts2, provider2, run2 = run_job(job2)
    assert tree_digest(run2 / "dataset")[0] == digest  # compiled the same, byte for byte
    (data2,) = staged2
    assert data2.prefix == prefix and data2.sent_bytes == 0
    requests2 = moto_server.requests[second_request:]
    assert not [r for r in requests2 if r[0] in ("PUT", "POST") and r[1].startswith(f"/{BUCKET}/data/")]
    assert set(_box_fetches(requests2, prefix)) == set(files)
    assert not any(p == "dataset" or p.startswith("dataset/") for p in puts2), puts2
    assert (run2 / "model.pt").exists() and "checkpoint.pt" in _keys(f"jobs/{job2}/checkpoints/")
    (session2,) = book.sessions(job_id=job2)
    assert session2.session.end_reason == "completed" and session2.cost.compute_usd > 0
    assert result2.usd == session2.cost.total_usd
    assert all(i.state.gone for i in provider2.instances(job2))

    # No instance of either job left running, by EC2's own word.
    reservations = boto3.client("ec2", region_name=REGION).describe_instances()["Reservations"]
    states = [i["State"]["Name"] for r in reservations for i in r["Instances"]]
    assert len(states) == 2 and set(states) <= {"shutting-down", "terminated"}, states

    # The launcher's AWS calls, S3 among them, stay within the tables (also checked by `world`).
    s3_calls = {o for s, o in world.calls if s == "s3"}
    assert {"HeadObject", "PutObject"} <= s3_calls <= STAGING_OPERATIONS["s3"]
    assert {s for s, _ in world.calls} <= {"ec2", "ssm", "sts", "s3"}
