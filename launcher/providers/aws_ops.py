"""Every AWS API operation the launcher calls, per service: the contract with terraform/.

`AWS_OPERATIONS` lists the boto3 operation names (API names, e.g. `RunInstances`) that
launcher/providers/aws*.py call. A test records every call the provider makes under moto and
asserts it is a subset of this table; terraform's user policy is checked against it, so the
policy allows exactly these and nothing else.

`AWS_IMPLIED_ACTIONS` are IAM actions that no API call names but AWS checks anyway:
- `ec2:CreateTags` is authorised for every create call that carries `TagSpecifications`
  (RunInstances, ImportKeyPair, CreateSecurityGroup), see
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
- `iam:PassRole` is checked when RunInstances attaches the instance profile
  (`[aws] instance_profile`), see
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html
"""

from __future__ import annotations

AWS_OPERATIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset(
        {
            # offers
            "DescribeSpotPriceHistory",
            "DescribeInstanceTypeOfferings",
            # launch
            "DescribeImages",
            "DescribeSubnets",
            "ImportKeyPair",
            "CreateSecurityGroup",
            "AuthorizeSecurityGroupIngress",
            "RunInstances",
            # describe, status, stop, gc
            "DescribeInstances",
            "TerminateInstances",
            "DescribeKeyPairs",
            "DeleteKeyPair",
            "DescribeSecurityGroups",
            "DeleteSecurityGroup",
        }
    ),
    "ssm": frozenset({"GetParameter"}),  # the Deep Learning AMI id
    "sts": frozenset({"GetCallerIdentity"}),  # credentials check and the gpuhire:owner tag
}

AWS_IMPLIED_ACTIONS: dict[str, frozenset[str]] = {
    "ec2": frozenset({"CreateTags"}),
    "iam": frozenset({"PassRole"}),
}


def iam_actions() -> list[str]:
    """All IAM actions the launcher needs, as `service:Action` strings, sorted."""
    actions = {
        f"{service}:{op}"
        for table in (AWS_OPERATIONS, AWS_IMPLIED_ACTIONS)
        for service, ops in table.items()
        for op in ops
    }
    return sorted(actions)
