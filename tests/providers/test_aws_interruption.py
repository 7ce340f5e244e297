"""Spot interruption (carried out through moto's backend) -> end reason and the free first hour."""

from __future__ import annotations

import threading
import time
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


# -- the end reason is EC2's own word (issue 13) ---------------------------------------------

def shut_down_by_the_box(instance_id: str) -> None:
    """What EC2 records when the box shuts itself down (the dead-man switch): moto internals."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    inst = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id)
    inst.terminate()
    inst.state_reason = StateReason(
        "Client.InstanceInitiatedShutdown: Instance initiated shutdown", "Client.InstanceInitiatedShutdown")


@pytest.mark.parametrize(("ec2", "caller", "booked"), [
    ("spot-interruption", None, "spot-interruption"),
    ("spot-interruption", "completed", "spot-interruption"),  # EC2 took it: nobody says otherwise
    ("user", None, "user"),
    ("user", "completed", "completed"),  # we ended it and say why
    ("user", "spot-interruption", "user"),  # only EC2 can call it an interruption
    ("unknown", "spot-interruption", "unknown"),
    (None, "spot-interruption", "unknown"),
    ("unknown", "completed", "completed"),
    (None, None, "unknown"),
])
def test_refine_reason_never_invents_an_interruption(ec2: str | None, caller: str | None, booked: str) -> None:
    from launcher.providers.aws.types import refine_reason

    assert refine_reason(ec2, caller) == booked


def test_released_with_spot_interruption_is_booked_as_users(make_provider, world: AwsWorld, book: Ledger) -> None:
    """The probe of issue 13: the launcher terminated the box and asked for a free interruption."""
    provider = make_provider()
    launched = provider.launch(LaunchRequest("job-lie", "t4", tuple(provider.offers("t4"))))
    provider.release("job-lie", "spot-interruption")
    assert provider.describe(launched.instance.instance_id).state_reason == "Client.UserInitiatedShutdown"
    view = book.sessions(job_id="job-lie")[0]
    assert view.session.end_reason == "user" and not view.cost.interruption_free
    assert view.cost.compute_usd == Decimal("0.18") * view.cost.billed_s / 3600 > 0


def test_close_sessions_keeps_users_and_unknown_ends(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider()
    offers = tuple(provider.offers("t4"))
    by_user = provider.launch(LaunchRequest("job-u", "t4", offers)).instance.instance_id
    by_box = provider.launch(LaunchRequest("job-b", "t4", offers)).instance.instance_id
    provider.terminate([by_user])  # someone (the console, a script) terminated it
    shut_down_by_the_box(by_box)
    assert provider.describe(by_user).end_reason == "user"
    assert provider.describe(by_box).end_reason == "unknown"
    closed = provider.close_sessions(default_reason="spot-interruption")
    assert {i.instance_id: i.end_reason for i in closed} == {by_user: "user", by_box: "unknown"}
    reasons = {v.session.instance_id: v.session.end_reason for v in book.sessions()}
    assert reasons == {by_user: "user", by_box: "unknown"}
    assert all(v.cost.compute_usd > 0 for v in book.sessions())


# -- letting EC2 take the box after a notice ----------------------------------------------------

def _terminated_ids(provider) -> list[str]:
    seen: list[str] = []
    provider.ec2.meta.events.register(
        "before-parameter-build.ec2.TerminateInstances",
        lambda params, **_: seen.extend(params.get("InstanceIds", [])))
    return seen


def test_let_go_box_taken_by_ec2_is_never_terminated_by_us(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(notice_grace_s=60)
    terminated = _terminated_ids(provider)
    launched = provider.launch(LaunchRequest("job-go", "t4", tuple(provider.offers("t4"))))
    iid = launched.instance.instance_id
    provider.let_go("job-go", iid, utcnow() + timedelta(seconds=120))
    assert book.get_session(launched.session_id).end_at is None  # EC2 has not taken it yet
    interrupt(iid)
    provider.reclaim("job-go")
    assert book.get_session(launched.session_id).end_reason == "spot-interruption"
    provider.release("job-go", "completed")  # the settle afterwards changes nothing
    assert book.get_session(launched.session_id).end_reason == "spot-interruption"
    assert iid not in terminated


def test_let_go_box_still_running_after_the_grace_is_terminated_and_billed(
    make_provider, world: AwsWorld, book: Ledger
) -> None:
    provider = make_provider(notice_grace_s=1)
    terminated = _terminated_ids(provider)
    launched = provider.launch(LaunchRequest("job-stay", "t4", tuple(provider.offers("t4"))))
    iid = launched.instance.instance_id
    notice_at = utcnow() + timedelta(seconds=1)
    provider.let_go("job-stay", iid, notice_at)
    provider.reclaim("job-stay")
    assert iid not in terminated and book.get_session(launched.session_id).end_at is None  # in grace
    time.sleep(2.2)
    provider.reclaim("job-stay")
    assert terminated == [iid]
    view = book.sessions(job_id="job-stay")[0]
    assert view.session.end_reason == "user" and view.cost.compute_usd > 0
    assert view.session.end_at is not None and view.session.end_at >= (notice_at + timedelta(seconds=1)).replace(
        microsecond=0)


def test_release_waits_for_ec2_to_take_a_box_it_gave_notice_on(
    make_provider, world: AwsWorld, book: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("launcher.providers.aws.reclaim.LOOK_EVERY_S", 0.2)
    provider = make_provider(notice_grace_s=30)
    terminated = _terminated_ids(provider)
    launched = provider.launch(LaunchRequest("job-wait", "t4", tuple(provider.offers("t4"))))
    iid = launched.instance.instance_id
    provider.let_go("job-wait", iid, utcnow() + timedelta(seconds=1))
    ec2 = threading.Timer(1.0, interrupt, args=(iid,))  # EC2 keeps its word
    ec2.start()
    started = time.monotonic()
    provider.release("job-wait", "user")
    ec2.join()
    assert time.monotonic() - started < 5  # it waited for EC2, not for the whole grace
    assert book.get_session(launched.session_id).end_reason == "spot-interruption"
    assert iid not in terminated


def test_let_go_without_a_notice_ends_the_box_at_once(make_provider, world: AwsWorld, book: Ledger) -> None:
    provider = make_provider(notice_grace_s=600)
    launched = provider.launch(LaunchRequest("job-none", "t4", tuple(provider.offers("t4"))))
    provider.let_go("job-none", launched.instance.instance_id, None)
    assert book.get_session(launched.session_id).end_reason == "user"


def test_ctrl_c_while_release_waits_for_ec2_ends_the_box(
    make_provider, world: AwsWorld, book: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("launcher.providers.aws.reclaim.LOOK_EVERY_S", 0.1)
    provider = make_provider(notice_grace_s=600)
    launched = provider.launch(LaunchRequest("job-cc", "t4", tuple(provider.offers("t4"))))
    iid = launched.instance.instance_id
    provider.let_go("job-cc", iid, utcnow() + timedelta(seconds=120))
    asked = [0]

    def ctrl_c(**_: object) -> None:  # the user's Ctrl-C lands while the launcher asks EC2
        asked[0] += 1
        if asked[0] == 2:
            raise KeyboardInterrupt

    provider.ec2.meta.events.register("before-call.ec2.DescribeInstances", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        provider.release("job-cc", "user")
    assert provider.describe(iid).state == InstanceState.terminated  # not left running
    assert book.get_session(launched.session_id).end_reason == "user"
