"""The IAM documents allow what gpuhire calls and nothing else.

Both are compared with launcher/providers/aws/ops.py, whose tables are checked against the code
(tests/providers/test_aws_ops.py records the EC2 provider under moto, test_aws_calls.py scans
staging, the fleet and its worker and records staging under moto):
- the user policy: `iam_actions()` (EC2 provider, S3 staging, the inference fleet) and the
  [alerts] SNS channel;
- the instance role: `worker_iam_actions()` (the fleet worker and the image pull).
"""

from __future__ import annotations

import re
from pathlib import Path

from launcher.providers.aws.ops import iam_actions, worker_iam_actions
from tests.terraform.tfparse import ROOT, policy_statements

BUCKET = "${aws_s3_bucket.this.arn}"
QUEUES = "${local.queue_arn}"  # arn:<partition>:sqs:<region>:<account>:gpuhire-
# ledger/alerts/channels.py publishes to the topic (asserted below, so this cannot go stale).
SNS_ALERTS = {"sns:Publish"}
# Describe/Get calls with no resource-level permissions: "*" is the only resource they take.
UNSCOPABLE = {"ec2:DescribeImages", "ec2:DescribeInstanceTypeOfferings", "ec2:DescribeInstances",
              "ec2:DescribeKeyPairs", "ec2:DescribeSecurityGroups", "ec2:DescribeSpotPriceHistory",
              "ec2:DescribeSubnets", "sts:GetCallerIdentity"}


def _actions(statements: list[dict]) -> set[str]:
    return {a for s in statements for a in s["actions"]}


def test_sns_publish_is_really_called_by_the_alerts_channel() -> None:
    source = (ROOT / "ledger" / "alerts" / "channels.py").read_text()
    assert re.search(r"\.publish\(", source)


def test_user_policy_allows_exactly_the_launchers_calls() -> None:
    expected = set(iam_actions()) | SNS_ALERTS
    allowed = _actions(policy_statements("user"))
    assert expected - allowed == set(), "calls gpuhire makes that the policy would deny"
    assert allowed - expected == set(), "actions the policy allows that gpuhire never calls"


def test_user_policy_has_no_wildcards_beyond_what_aws_forces() -> None:
    for s in policy_statements("user"):
        assert s.get("effect", "Allow") == "Allow"
        for action in s["actions"]:
            assert "*" not in action, f"{s['sid']}: wildcard action {action}"
        if "*" in s["resources"]:
            assert set(s["actions"]) <= UNSCOPABLE, f"{s['sid']}: scope its resources"


def test_user_policy_write_calls_are_limited_to_gpuhire_resources() -> None:
    by_sid = {s["sid"]: s for s in policy_statements("user")}
    conditions = {
        sid: {c["variable"] for c in s.get("condition", [])} for sid, s in by_sid.items()
    }
    # Only what carries (or is created with) the gpuhire:job tag can be launched, ended, changed.
    assert "${local.job_req_key}" in conditions["LaunchTaggedInstance"]
    assert {"ec2:InstanceType", "ec2:MetadataHttpTokens"} <= conditions["LaunchTaggedInstance"]
    assert "ec2:Encrypted" in conditions["LaunchTaggedEncryptedVolume"]
    assert "${local.job_tag_key}" in conditions["TerminateJobInstances"]
    assert "${local.job_tag_key}" in conditions["ManageJobSecurityGroup"]
    assert "ec2:CreateAction" in conditions["TagOnCreate"]
    assert "iam:PassedToService" in conditions["PassInstanceRole"]
    assert by_sid["PassInstanceRole"]["resources"] == ["${aws_iam_role.this.arn}"]
    assert by_sid["DeleteJobKeyPair"]["resources"] == ["${local.ec2_arn}:key-pair/gpuhire-*"]
    iam = (ROOT / "terraform" / "iam.tf").read_text()
    assert 'job_tag_key = "aws:ResourceTag/${local.tag_job}"' in iam
    assert 'job_req_key = "aws:RequestTag/${local.tag_job}"' in iam


def _list_prefixes(statement: dict) -> list[str]:
    """The s3:prefix values a ListBucket statement is limited to (it must be limited)."""
    assert statement["resources"] == [BUCKET], statement["sid"]
    (condition,) = statement["condition"]
    assert condition["test"] == "StringLike" and condition["variable"] == "s3:prefix"
    return list(condition["values"])


def test_user_policy_stages_only_under_data_and_jobs() -> None:
    for s in policy_statements("user"):
        if "s3:ListBucket" in s["actions"]:
            assert s["actions"] == ["s3:ListBucket"]
            assert sorted(_list_prefixes(s)) == ["data/*", "jobs/*"]  # HeadObject: 404, not 403
        elif any(a.startswith("s3:") for a in s["actions"]):
            for resource in s["resources"]:
                assert re.fullmatch(
                    re.escape(BUCKET) + r"/((jobs|data)/\*|jobs/\*/(checkpoints/\*|model\.(pt|mlmodel|safetensors)|segment/\*|pages/\*))", resource)
        if "s3:PutObjectTagging" in s["actions"]:  # only what a lifecycle rule expires by tag
            assert s["resources"] == [f"{BUCKET}/jobs/*/{k}" for k in (
                "checkpoints/*", "model.pt", "model.mlmodel", "model.safetensors", "segment/*", "pages/*")]


def test_user_policy_reaches_only_gpuhire_queues() -> None:
    iam = (ROOT / "terraform" / "iam.tf").read_text()
    assert 'queue_arn = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:gpuhire-"' in iam
    fleet = ROOT / "launcher" / "fleet.py"
    if fleet.exists():  # the queues it creates are named gpuhire-<job>-work/-dead/-done
        assert 'f"gpuhire-{self.job}"' in fleet.read_text()
    sqs = [s for s in policy_statements("user") if any(a.startswith("sqs:") for a in s["actions"])]
    assert sqs and all(s["resources"] == [f"{QUEUES}*"] for s in sqs)


def test_instance_role_allows_exactly_the_workers_calls_and_the_image_pull() -> None:
    statements = policy_statements("instance")
    expected = set(worker_iam_actions())
    allowed = _actions(statements)
    assert expected - allowed == set(), "calls the box makes that the role would deny"
    assert allowed - expected == set(), "actions the role allows that the box never calls"


def test_instance_role_reaches_only_the_fleets_keys_queues_and_the_image() -> None:
    reads = {f"{BUCKET}/jobs/*/{k}" for k in ("model.pt", "model.mlmodel", "model.safetensors", "segment/*",
                                              "pages/*", "results/*")}
    for s in policy_statements("instance"):
        actions, resources = set(s["actions"]), s["resources"]
        if actions == {"s3:ListBucket"}:
            assert _list_prefixes(s) == ["jobs/*"]  # the worker's HeadObject on results: 404
        elif actions == {"s3:GetObject"}:
            assert set(resources) == reads
        elif actions & {"s3:PutObject", "s3:AbortMultipartUpload"}:
            assert resources == [f"{BUCKET}/jobs/*/results/*"], "the box writes results only"
        elif actions == {"sqs:SendMessage"}:  # reports, and a batch requeued on a spot notice
            assert resources == [f"{QUEUES}*-done", f"{QUEUES}*-work"]
        elif all(a.startswith("sqs:") for a in actions):
            assert resources == [f"{QUEUES}*-work"]
        elif actions == {"ecr:GetAuthorizationToken"}:
            assert resources == ["*"]  # no resource-level form
        else:
            assert all(a.startswith("ecr:") for a in actions) and resources == ["${aws_ecr_repository.this.arn}"]
        assert "*" not in resources or actions == {"ecr:GetAuthorizationToken"}


def test_ssh_is_open_only_to_operator_cidrs() -> None:
    main = (Path(ROOT) / "terraform" / "main.tf").read_text()
    ingress = main.split('resource "aws_vpc_security_group_ingress_rule" "this"')[1].split("\n}\n")[0]
    assert "for_each = toset(var.operator_cidrs)" in ingress
    assert "from_port         = 22" in ingress and "to_port           = 22" in ingress
    assert "0.0.0.0/0" not in ingress
