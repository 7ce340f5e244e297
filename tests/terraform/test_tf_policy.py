"""The IAM documents allow what gpuhire calls and nothing else.

The user policy is compared with launcher/providers/aws_ops.py (the launcher's AWS calls,
itself checked against the calls the provider makes under moto), plus S3 staging and the
[alerts] SNS channel. The instance role is compared with a fixed list: the box reads and writes
its job prefixes and pulls the trainer image.
"""

from __future__ import annotations

import re
from pathlib import Path

from launcher.providers.aws_ops import iam_actions
from tests.terraform.tfparse import ROOT, policy_statements

# Staging data and job files through the bucket (launcher side); see terraform/iam.tf.
S3_STAGING = {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
              "s3:AbortMultipartUpload", "s3:PutObjectTagging"}
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
    expected = set(iam_actions()) | S3_STAGING | SNS_ALERTS
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


def test_user_policy_stages_only_under_data_and_jobs() -> None:
    for s in policy_statements("user"):
        if any(a.startswith("s3:") for a in s["actions"]):
            for resource in s["resources"]:
                assert resource == "${aws_s3_bucket.this.arn}" or re.fullmatch(
                    r"\$\{aws_s3_bucket\.this\.arn\}/((jobs|data)/\*|jobs/\*/checkpoints/\*)", resource), resource


def test_instance_role_reads_and_writes_job_prefixes_and_pulls_the_image_only() -> None:
    statements = policy_statements("instance")
    assert _actions(statements) == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
        "s3:PutObjectTagging", "s3:DeleteObject", "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
    }
    for s in statements:
        for resource in s["resources"]:
            if resource == "*":
                assert s["actions"] == ["ecr:GetAuthorizationToken"]  # no resource-level form
            elif "s3_bucket" in resource:
                assert resource == "${aws_s3_bucket.this.arn}" or resource.split("}/")[1] in (
                    "jobs/*", "data/*", "jobs/*/checkpoints/*")
            else:
                assert resource == "${aws_ecr_repository.this.arn}"
        if "s3:PutObject" in s["actions"] or "s3:DeleteObject" in s["actions"]:
            assert all("/jobs/" in r for r in s["resources"]), "the box never writes data/"


def test_ssh_is_open_only_to_operator_cidrs() -> None:
    main = (Path(ROOT) / "terraform" / "main.tf").read_text()
    ingress = main.split('resource "aws_vpc_security_group_ingress_rule" "this"')[1].split("\n}\n")[0]
    assert "for_each = toset(var.operator_cidrs)" in ingress
    assert "from_port         = 22" in ingress and "to_port           = 22" in ingress
    assert "0.0.0.0/0" not in ingress
