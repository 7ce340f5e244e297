"""The call tables of launcher/providers/aws/ops.py cover what the code calls.

terraform's IAM documents are checked against those tables (test_tf_policy.py), so the tables
must not miss a call: every `s3.<method>(` and `sqs.<method>(` in the staging, fleet and worker
code is mapped to its API operation (botocore's own names) and must be listed. Staging also
runs under moto with every call recorded. AWS_OPERATIONS (EC2) is recorded the same way in
tests/providers/test_aws_ops.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.providers.aws.ops import (
    DOWNLOAD_FILE,
    FLEET_OPERATIONS,
    STAGING_OPERATIONS,
    UPLOAD_FILE,
    WORKER_OPERATIONS,
    iam_action,
)
from tests.terraform.tfparse import ROOT

CODE = {  # file (from the repository root) -> the table its calls must be in
    "launcher/providers/aws/staging.py": STAGING_OPERATIONS,
    "launcher/infer/queue.py": FLEET_OPERATIONS,
    "jobs/fleet/worker.py": WORKER_OPERATIONS,
}
TRANSFERS = {"upload_file": UPLOAD_FILE, "download_file": DOWNLOAD_FILE}


def _operations(service: str) -> dict[str, str]:
    """boto3 method name -> API operation name, for one service (botocore's model)."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def calls_in(path: Path) -> set[tuple[str, str]]:
    """(service, operation) of every `<...>.s3.<method>(` / `<...>.sqs.<method>(` call in a file."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner, method = node.func.value, node.func.attr
        service = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if service not in ("s3", "sqs"):
            continue
        if method in TRANSFERS:
            found |= {(service, op) for op in TRANSFERS[method]}
        elif method == "generate_presigned_url":
            presigned = node.args[0]
            assert isinstance(presigned, ast.Constant), f"{path.name}: presign a literal operation"
            found.add((service, _operations(service)[presigned.value]))
        else:
            assert method in _operations(service), f"{path.name}: {service}.{method} is no API call"
            found.add((service, _operations(service)[method]))
    return found


@pytest.mark.parametrize("name", sorted(CODE))
def test_every_call_in_the_code_is_in_its_table(name: str) -> None:
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"launcher/{name} is not written yet")
    calls = calls_in(path)
    assert calls, f"{name}: no AWS call found (did the client attribute change name?)"
    table = CODE[name]
    missing = {(s, op) for s, op in calls if op not in table.get(s, frozenset())}
    assert missing == set(), f"launcher/{name} calls what aws_ops.py does not list: {sorted(missing)}"


def test_the_tables_list_nothing_the_code_never_calls() -> None:
    for name, table in CODE.items():
        path = ROOT / name
        if not path.exists():
            continue
        calls = calls_in(path)
        listed = {(s, op) for s, ops in table.items() for op in ops}
        assert listed - calls == set(), f"aws_ops.py lists for {name} what it never calls"


def test_the_scanner_sees_transfers_presigned_urls_and_plain_calls(tmp_path: Path) -> None:
    code = tmp_path / "x.py"
    code.write_text("def f(self, sqs):\n"
                    "    self.s3.download_file('b', 'k', 'p')\n"
                    "    self.s3.generate_presigned_url('get_object', Params={})\n"
                    "    sqs.delete_message_batch(QueueUrl='u', Entries=[])\n"
                    "    self.other.put_object()\n")
    assert calls_in(code) == {("s3", "HeadObject"), ("s3", "GetObject"), ("sqs", "DeleteMessageBatch")}


def test_operations_map_to_the_iam_actions_aws_checks() -> None:
    assert iam_action("s3", "HeadObject") == "s3:GetObject"
    assert {iam_action("s3", op) for op in UPLOAD_FILE} == {"s3:PutObject", "s3:AbortMultipartUpload"}
    assert iam_action("sqs", "SendMessageBatch") == "sqs:SendMessage"
    assert iam_action("sqs", "DeleteMessageBatch") == "sqs:DeleteMessage"
    assert iam_action("ec2", "RunInstances") == "ec2:RunInstances"


# ------------------------------------------------------------------ staging under moto


@pytest.fixture
def recorded_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[object, list[str]]]:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="gpuhire-calls")
        calls: list[str] = []
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
        yield client, calls


@pytest.mark.slow
def test_staging_calls_what_its_table_lists(recorded_s3: tuple[object, list[str]], tmp_path: Path) -> None:
    from launcher.providers.aws.staging import S3Stage

    client, calls = recorded_s3
    data = tmp_path / "ds"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    (data / "images.u8").write_bytes(b"\0" * (9 << 20))  # above 8 MiB: a multipart upload
    stage = S3Stage(client, "gpuhire-calls")
    staged = stage.put_dataset(data)
    assert stage.put_dataset(data).sent_bytes == 0  # HeadObject finds the manifest
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"w")
    stage.put_checkpoint("job-1", ckpt, "last.pt")
    assert "curl" in stage.fetch_script(staged, "/tmp/x")  # presigned GET: no call from here
    recorded = set(calls)
    assert recorded <= STAGING_OPERATIONS["s3"], sorted(recorded - STAGING_OPERATIONS["s3"])
    assert {"HeadObject", "PutObject", "CreateMultipartUpload", "UploadPart",
            "CompleteMultipartUpload"} <= recorded
