"""Spot interruption (carried out through moto's backend) -> end reason and the free first hour."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from aws_fakes import REGION, AwsWorld

from launcher.providers.aws.types import InstanceState, LaunchRequest
from ledger.book import Ledger
from ledger.timeutil import utcnow


def interrupt(instance_id: str) -> None:
    """What EC2 does when it takes a spot instance back (moto 5.2.5 internals, see facts.md)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    inst = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id)
    inst.terminate()
    inst.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
    )


def test_interruption_closes_session_free_in_first_hour(make_provider, world: AwsWorld, book: Ledger) -> None:
    # The session starts 20 minutes before EC2's (moto's) clock says the instance went.
    provider = make_provider(now=lambda: utcnow() - timedelta(minutes=20))
    launched = provider.launch(LaunchRequest("job-int", "t4", tuple(provider.offers("t4"))))
    iid = launched.instance.instance_id
    assert provider.interruption(iid) is None

    interrupt(iid)
    notice = provider.interruption(iid)
    assert notice is not None and notice.source == "state-reason" and notice.action == "terminate"
    described = provider.describe(iid)
    assert described.state == InstanceState.terminated and described.end_reason == "spot-interruption"

    closed = provider.close_sessions()  # what status/gc/the train flow call
    assert [i.instance_id for i in closed] == [iid]
    view = book.sessions(job_id="job-int")[0]
    assert view.session.end_reason == "spot-interruption" and not view.running
    assert view.cost.interruption_free and view.cost.compute_usd == Decimal(0)
    assert 1190 < view.cost.duration_s < 1260
    assert view.cost.storage_usd > 0  # the volume is still billed for its seconds

    # releasing the job afterwards keeps EC2's reason
    provider.release("job-int", "completed")
    assert book.get_session(launched.session_id).end_reason == "spot-interruption"


def test_user_termination_is_billed(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider()
    launched = provider.launch(LaunchRequest("job-usr", "t4", tuple(provider.offers("t4"))))
    gone = provider.release("job-usr", "completed")
    assert [i.instance_id for i in gone] == [launched.instance.instance_id]
    view = book.sessions(job_id="job-usr")[0]
    assert view.session.end_reason == "completed"
    # the 60-second minimum at the spot price in force (0.18 USD/h)
    assert view.cost.billed_s == 60 and view.cost.compute_usd == Decimal("0.18") * 60 / 3600


def test_interruption_after_the_first_hour_is_billed(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(now=lambda: utcnow() - timedelta(hours=2))
    launched = provider.launch(LaunchRequest("job-late", "t4", tuple(provider.offers("t4"))))
    interrupt(launched.instance.instance_id)
    provider.close_sessions()
    view = book.sessions(job_id="job-late")[0]
    assert view.session.end_reason == "spot-interruption" and not view.cost.interruption_free
    assert view.cost.compute_usd > Decimal("0.18") * 2 * Decimal("0.99")  # ~2 h at 0.18 USD/h


def test_price_change_is_stored_and_costed_piecewise(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(now=lambda: utcnow() - timedelta(hours=1))
    launched = provider.launch(LaunchRequest("job-price", "t4", tuple(provider.offers("t4"))))
    assert provider.refresh_price(launched.session_id) is None  # unchanged: nothing stored
    half_hour_ago = utcnow() - timedelta(minutes=30)
    world.prices = [p for p in world.prices if p[:2] != ("us-east-1b", "g4dn.2xlarge")] + [
        ("us-east-1b", "g4dn.2xlarge", "0.1800", half_hour_ago - timedelta(minutes=40)),
        ("us-east-1b", "g4dn.2xlarge", "0.3000", half_hour_ago),
    ]
    provider.now = utcnow
    assert provider.refresh_price(launched.session_id) == Decimal("0.3000")
    provider.release("job-price", "completed")
    view = book.sessions(job_id="job-price")[0]
    # ~30 min at 0.18 then ~30 min at 0.30 = ~0.24 USD
    assert Decimal("0.235") < view.cost.compute_usd < Decimal("0.245")


def test_instance_taken_while_booting(make_provider, world: AwsWorld, book: Ledger) -> None:
    from launcher.errors import ProviderError

    provider = make_provider()
    offers = provider.offers("t4")
    # EC2 reclaims the spot instance right after RunInstances returned, before it ran.
    provider.ec2.meta.events.register(
        "after-call.ec2.RunInstances", lambda parsed, **_: interrupt(parsed["Instances"][0]["InstanceId"]))
    with pytest.raises(ProviderError, match="did not start"):
        provider.launch(LaunchRequest("job-boot", "t4", tuple(offers)))
    (view,) = book.sessions(job_id="job-boot")
    assert view.session.end_reason == "spot-interruption" and view.cost.compute_usd == 0
