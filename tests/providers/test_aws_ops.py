"""AWS_OPERATIONS is exact: the provider's whole life calls every listed operation and no other.

terraform's user policy is checked against this table, so a call added to the provider
without updating the table fails here (every provider test also checks the subset at teardown).
"""

from __future__ import annotations

from aws_fakes import AwsWorld

from launcher.providers.aws import gc as aws_gc
from launcher.providers.aws.ops import AWS_IMPLIED_ACTIONS, AWS_OPERATIONS, iam_actions
from launcher.providers.aws.types import LaunchRequest


def test_full_life_calls_exactly_the_listed_operations(make_provider, world: AwsWorld) -> None:
    provider = make_provider()
    offers = provider.offers("t4")
    launched = provider.launch(LaunchRequest("job-ops", "t4", tuple(offers)))
    provider.describe(launched.instance.instance_id)
    provider.instances()
    provider.release("job-ops", "completed")
    aws_gc.collect(provider, aws_gc.plan(provider), wait_s=0)

    called: dict[str, set[str]] = {}
    for service, operation in world.calls:
        called.setdefault(service, set()).add(operation)
    assert called == {service: set(ops) for service, ops in AWS_OPERATIONS.items()}


def test_iam_actions_include_implied_permissions() -> None:
    actions = iam_actions()
    assert "ec2:RunInstances" in actions and "ssm:GetParameter" in actions
    assert "ec2:CreateTags" in actions and "iam:PassRole" in actions  # tag-on-create, instance profile
    assert actions == sorted(set(actions))
    assert set(AWS_IMPLIED_ACTIONS["ec2"]).isdisjoint(AWS_OPERATIONS["ec2"])
