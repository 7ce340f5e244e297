"""Ownership formulas and the buy signal on cases from the field (design.md)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ledger.catalogue import BUILTIN_CARDS
from ledger.errors import ConfigError
from ledger.ownership import (
    MonthUsage,
    OwnershipParams,
    advise,
    own_fixed_per_month,
    own_running_per_gpu_hour,
)

RTX3060 = BUILTIN_CARDS["rtx3060"]
RTX4090 = BUILTIN_CARDS["rtx4090"]
PARAMS = OwnershipParams()


def months(*rows: tuple[str, str, str]) -> list[MonthUsage]:
    return [MonthUsage(m, D(usd), {"t4": D(h)} if D(h) else {}) for m, usd, h in rows]


def test_formulas() -> None:
    # 329 x (1 - 0.30) / 36
    assert own_fixed_per_month(RTX3060) == D("329") * D("0.70") / 36
    # speed t4 1.0 / 1.25 x (170 + 60) / 1000 x 0.30 = 0.0552 USD per rented T4 hour
    assert own_running_per_gpu_hour("t4", RTX3060, PARAMS) == D("0.0552")
    # an L4 hour is twice the T4's work: 2.0 / 4.0 x (450 + 60) / 1000 x 0.30
    assert own_running_per_gpu_hour("l4", RTX4090, PARAMS) == D("0.0765")


def test_bursty_use_says_rent() -> None:
    # three 3-hour T4 trainings a year at 0.20 USD/h: one of them in the window
    usage = months(("2026-08", "0", "0"), ("2026-09", "0.60", "3"), ("2026-10", "0", "0"))
    a = advise(usage, RTX3060, PARAMS, D("1.80"))
    assert a.verdict == "rent"
    assert a.payback_months == D(329) / ((D("0.60") - 3 * D("0.0552")) / 3)
    assert a.payback_months > 24


def test_continuous_pipeline_says_buy() -> None:
    # 8 h a day on a T4 spot at 0.20 USD/h, against an RTX 3060
    usage = months(("2026-08", "49.60", "248"), ("2026-09", "48.00", "240"),
                   ("2026-10", "49.60", "248"))
    a = advise(usage, RTX3060, PARAMS, D("147.20"))
    assert a.verdict == "buy", a.reason
    assert a.payback_months is not None and a.payback_months < 12
    running = (248 + 240 + 248) * D("0.0552") / 3
    assert a.own_running_usd_per_month == running
    assert a.rent_usd_per_month == D("147.20") / 3
    assert a.payback_months == D(329) / (D("147.20") / 3 - running)
    # break-even: fixed / (0.20 - 0.0552) GPU-hours a month
    assert a.breakeven_hours_per_month == own_fixed_per_month(RTX3060) / (D("0.20") - D("0.0552"))
    assert all(m.exceeds for m in a.months)
    assert "pay for itself" in a.reason


def test_some_months_only_says_watch() -> None:
    # heavy in one month, idle in two: payback is long, but one month beat owning
    usage = months(("2026-08", "40", "200"), ("2026-09", "0", "0"), ("2026-10", "0", "0"))
    a = advise(usage, RTX3060, PARAMS, D("40"))
    assert a.verdict == "watch"
    assert [m.exceeds for m in a.months] == [True, False, False]
    assert "1 of 3 months" in a.reason


def test_payback_within_watch_threshold_says_watch() -> None:
    # savings ~ 20/month -> payback ~ 16.5 months, every month exceeds: watch, not buy
    usage = months(("2026-08", "21", "20"), ("2026-09", "21", "20"), ("2026-10", "21", "20"))
    a = advise(usage, RTX3060, PARAMS, D("63"))
    assert a.payback_months is not None and 12 < a.payback_months <= 24
    assert a.verdict == "watch"


def test_thresholds_are_configurable() -> None:
    usage = months(("2026-08", "21", "20"), ("2026-09", "21", "20"), ("2026-10", "21", "20"))
    lenient = OwnershipParams(buy_payback_months=D(18))
    assert advise(usage, RTX3060, lenient, D("63")).verdict == "buy"
    dear_power = OwnershipParams(usd_per_kwh=D("5"))
    assert advise(usage, RTX3060, dear_power, D("63")).verdict != "buy"


def test_no_usage_means_no_payback_and_no_breakeven() -> None:
    usage = months(("2026-08", "0", "0"), ("2026-09", "0", "0"), ("2026-10", "0", "0"))
    a = advise(usage, RTX3060, PARAMS, D(0))
    assert a.verdict == "rent" and a.payback_months is None and a.breakeven_hours_per_month is None


def test_unknown_gpu_names_the_config_fix() -> None:
    usage = [MonthUsage("2026-10", D("10"), {"h100": D("2")})]
    with pytest.raises(ConfigError, match=r"\[speeds\] h100"):
        advise(usage, RTX3060, OwnershipParams(window_months=1), D("10"))
