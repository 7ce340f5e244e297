"""Table-driven cost cases (design.md "Cost model") and properties that must always hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.costs import CostInput, PriceAt, session_cost

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
AWS = {"min_billed_s": 60, "interruption_free_s": 3600}


def aws_spot(seconds: float, reason: str = "completed", **kw) -> CostInput:
    return CostInput(
        start_at=T0,
        end_at=T0 + timedelta(seconds=seconds),
        prices=kw.pop("prices", (PriceAt(T0, D("0.36")),)),
        market="spot",
        end_reason=reason,
        **AWS,
        **kw,
    )


# (name, input, expected compute USD, expected billed seconds)
CASES = [
    ("59 s is billed as the 60 s minimum", aws_spot(59), D("0.36") * 60 / 3600, 60),
    ("a fraction of a second is a whole second", aws_spot(61.2), D("0.36") * 62 / 3600, 62),
    ("an hour at one price", aws_spot(3600), D("0.36"), 3600),
    (
        "price change mid-session: 30 min at 0.36 then 30 min at 0.72",
        aws_spot(
            3600,
            prices=(PriceAt(T0, D("0.36")), PriceAt(T0 + timedelta(minutes=30), D("0.72"))),
        ),
        D("0.18") + D("0.36"),
        3600,
    ),
    ("EC2 interruption at 50 min is free", aws_spot(3000, "spot-interruption"), D(0), 3000),
    (
        "EC2 interruption at 70 min is charged",
        aws_spot(4200, "spot-interruption"),
        D("0.36") * 4200 / 3600,
        4200,
    ),
    ("user termination at 50 min is charged", aws_spot(3000, "user"), D("0.36") * 3000 / 3600, 3000),
]


@pytest.mark.parametrize(("name", "inp", "compute", "billed"), CASES, ids=[c[0] for c in CASES])
def test_compute_cases(name: str, inp: CostInput, compute: D, billed: int) -> None:
    cost = session_cost(inp, now=T0 + timedelta(days=30))
    assert cost.compute_usd == compute
    assert cost.billed_s == billed
    assert not cost.running


def test_on_demand_interruption_reason_is_not_free() -> None:
    inp = CostInput(T0, T0 + timedelta(minutes=50), (PriceAt(T0, D("0.526")),),
                    market="on-demand", end_reason="spot-interruption", **AWS)
    assert session_cost(inp, T0).compute_usd == D("0.526") * 3000 / 3600


def test_ebs_and_ipv4_prorated_per_second() -> None:
    # 100 GB gp3 for 73 h = 100 x 0.08 x 73/730 = 0.80; IPv4 0.005 x 73 = 0.365
    inp = CostInput(
        T0, T0 + timedelta(hours=73), (PriceAt(T0, D("0.20")),), market="spot",
        volume_gb=100, ebs_usd_per_gb_month=D("0.08"), public_ipv4=True,
        ipv4_usd_per_hour=D("0.005"), **AWS,
    )
    cost = session_cost(inp, T0)
    assert cost.storage_usd == D("0.80")
    assert cost.ipv4_usd == D("0.365")
    assert cost.compute_usd == D("0.20") * 73
    assert cost.total_usd == D("0.80") + D("0.365") + D("14.60")


def test_interrupted_session_still_pays_disk_and_address() -> None:
    inp = aws_spot(1800, "spot-interruption", volume_gb=73, ebs_usd_per_gb_month=D("0.08"),
                   public_ipv4=True, ipv4_usd_per_hour=D("0.005"))
    cost = session_cost(inp, T0)
    assert cost.compute_usd == 0
    assert cost.interruption_free
    assert cost.storage_usd == D(73) * D("0.08") * 1800 / (730 * 3600)
    assert cost.ipv4_usd == D("0.0025")


def test_month_boundary_split_by_seconds() -> None:
    start = datetime(2026, 10, 31, 22, 0, tzinfo=UTC)
    inp = CostInput(start, start + timedelta(hours=4), (PriceAt(start, D("0.30")),),
                    volume_gb=10, ebs_usd_per_gb_month=D("0.08"))
    cost = session_cost(inp, start)
    assert [m.month for m in cost.months] == ["2026-10", "2026-11"]
    october, november = cost.months
    assert october.compute_usd == D("0.60") and november.compute_usd == D("0.60")
    assert october.duration_s == 7200 and november.duration_s == 7200
    assert october.storage_usd == november.storage_usd
    assert sum(m.total_usd for m in cost.months) == cost.total_usd


def test_non_utc_input_times_are_converted() -> None:
    cet = timezone(timedelta(hours=2))
    local_start = datetime(2026, 11, 1, 1, 30, tzinfo=cet)  # = 2026-10-31T23:30Z
    inp = CostInput(local_start, local_start + timedelta(hours=1), (PriceAt(local_start, D("1")),))
    cost = session_cost(inp, local_start)
    assert [(m.month, m.compute_usd) for m in cost.months] == [
        ("2026-10", D("0.5")), ("2026-11", D("0.5")),
    ]


def test_other_provider_has_no_minimum() -> None:
    inp = CostInput(T0, T0 + timedelta(seconds=10), (PriceAt(T0, D("3.60")),))
    cost = session_cost(inp, T0)
    assert cost.billed_s == 10 and cost.compute_usd == D("0.01")


def test_running_session_costed_to_now() -> None:
    inp = CostInput(T0, None, (PriceAt(T0, D("0.36")),), market="spot", **AWS)
    cost = session_cost(inp, now=T0 + timedelta(minutes=90))
    assert cost.running
    assert cost.compute_usd == D("0.54")


def test_minimum_can_reach_into_next_month() -> None:
    start = datetime(2026, 10, 31, 23, 59, 30, tzinfo=UTC)
    inp = CostInput(start, start + timedelta(seconds=10), (PriceAt(start, D("3.6")),), **AWS)
    cost = session_cost(inp, start)
    assert cost.billed_s == 60
    assert {m.month: m.compute_usd for m in cost.months} == {"2026-10": D("0.03"), "2026-11": D("0.03")}


durations = st.floats(min_value=0, max_value=40 * 24 * 3600, allow_nan=False)
prices = st.decimals(min_value=D(0), max_value=D(50), places=6)
reasons = st.sampled_from(["completed", "user", "spot-interruption", "unknown"])


def _inp(seconds: float, price: D, reason: str, change: D) -> CostInput:
    return CostInput(
        T0, T0 + timedelta(seconds=seconds),
        (PriceAt(T0, price), PriceAt(T0 + timedelta(hours=5), change)),
        market="spot", end_reason=reason, volume_gb=50, ebs_usd_per_gb_month=D("0.08"),
        public_ipv4=True, ipv4_usd_per_hour=D("0.005"), **AWS,
    )


@settings(max_examples=200, deadline=None)
@given(durations, prices, reasons, prices)
def test_cost_never_negative(seconds: float, price: D, reason: str, change: D) -> None:
    cost = session_cost(_inp(seconds, price, reason, change), T0)
    assert cost.total_usd >= 0
    assert all(m.total_usd >= 0 for m in cost.months)


@settings(max_examples=200, deadline=None)
@given(durations, st.floats(min_value=0, max_value=10 * 24 * 3600), prices, reasons, prices)
def test_cost_never_decreases_with_duration(
    seconds: float, extra: float, price: D, reason: str, change: D
) -> None:
    # Holds across the free-first-hour rule too: going past the hour only adds the charge.
    short = session_cost(_inp(seconds, price, reason, change), T0)
    longer = session_cost(_inp(seconds + extra, price, reason, change), T0)
    assert longer.total_usd >= short.total_usd
    assert longer.billed_s >= short.billed_s
