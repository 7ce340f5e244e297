"""Every rule type against a ledger with a fixed clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

import pytest

from launcher.config import Settings
from ledger.alerts import job_over_cap, run_checks
from ledger.book import Ledger, NewSession
from ledger.catalogue import DEFAULT_RULES
from ledger.models import Job

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def settings(*rules: dict[str, Any]) -> Settings:
    return Settings.model_validate({"alerts": {"rules": list(rules)}})


@pytest.fixture
def book(ledger: Ledger) -> Ledger:
    """October: 100 h of t4 at 1.00 = 100.00. November to NOW: 6.00 closed + a running job."""
    fixed = Ledger(ledger.engine, now=lambda: NOW)
    fixed.create_job(Job(id="big", kind="train", max_usd=D("20")))
    fixed.create_job(Job(id="idle", kind="train", metrics={"gpu_util_samples": [
        ["2026-11-15T11:40:00Z", 0.05], ["2026-11-15T11:50:00Z", 0.02],
        ["2026-11-15T11:59:00Z", 0.04]]}))
    fixed.create_job(Job(id="busy", kind="train", gpu_util=0.9))
    fixed.record_sessions([
        (NewSession("runpod", "t4", t("2026-10-01T00:00"), D("1.00"),
                    end_at=t("2026-10-05T04:00")), DEFAULT_RULES),
        (NewSession("runpod", "t4", t("2026-11-02T00:00"), D("1.00"),
                    end_at=t("2026-11-02T06:00")), DEFAULT_RULES),
        # running since 2026-11-14 12:00 at 1.00: 24.00 so far, over the job's 20.00 cap
        (NewSession("runpod", "t4", t("2026-11-14T12:00"), D("1.00"), job_id="big"),
         DEFAULT_RULES),
        # running 2 h, GPU at 2-5 % for the last 20 minutes
        (NewSession("runpod", "l4", t("2026-11-15T10:00"), D("0.50"), job_id="idle"),
         DEFAULT_RULES),
        (NewSession("runpod", "l4", t("2026-11-15T10:00"), D("0.50"), job_id="busy"),
         DEFAULT_RULES),
    ])
    return fixed


def fired(book: Ledger, *rules: dict[str, Any]) -> list[tuple[str, str]]:
    result = run_checks(book, settings(*rules), out=io.StringIO())
    assert not result.errors, result.errors
    return sorted((a.rule, a.period) for a in result.fired)


def test_monthly_budget_levels_and_projection(book: Ledger) -> None:
    # November so far: 6 + 24 + 2 x (2 h x 0.50) = 32.00; 14.5 of 30 days gone -> ~66.21 projected
    rule = {"name": "b", "type": "monthly_budget", "budget_usd": "40", "levels_pct": [50, 80, 100]}
    assert fired(book, rule) == [("b", "2026-11:50%"), ("b", "2026-11:80%"),
                                 ("b", "2026-11:projected")]
    assert fired(book, {**rule, "budget_usd": "64", "projected": False}) == [("b", "2026-11:50%")]
    assert fired(book, {**rule, "budget_usd": "70"}) == []


def test_job_budget_and_job_over_cap(book: Ledger) -> None:
    assert job_over_cap(book, "big", D("20")) is True
    assert job_over_cap(book, "big", D("24.01")) is False
    assert job_over_cap(book, "idle", D("1.01")) is False
    # "big" has its own 20.00 cap; the others fall back to the rule's 0.50
    rule = {"name": "j", "type": "job_budget", "cap_usd": "0.5"}
    assert fired(book, rule) == [("j", "job:big"), ("j", "job:busy"), ("j", "job:idle")]
    assert fired(book, {"name": "j", "type": "job_budget"}) == [("j", "job:big")]


def test_buy_signal_change(book: Ledger) -> None:
    # Aug-Oct: only October's 100.00 beats owning an RTX 3060 -> watch; Jul-Sep: nothing -> rent
    rule = {"name": "s", "type": "buy_signal", "card": "rtx3060"}
    assert fired(book, rule) == [("s", "2026-10:watch")]
    assert fired(book, {**rule, "verdicts": ["buy"]}) == []


def test_rent_fraction(book: Ledger) -> None:
    # all rent through November: 100 + 32 = 132.00 of the RTX 3060's 329
    rule = {"name": "r", "type": "rent_fraction", "card": "rtx3060", "fractions": [0.25, 0.4, 0.5]}
    assert fired(book, rule) == [("r", "rtx3060:0.25"), ("r", "rtx3060:0.4")]


def test_long_running(book: Ledger) -> None:
    assert [p for _, p in fired(book, {"name": "l", "type": "long_running", "hours": 12})] == [
        "session:3"]
    assert len(fired(book, {"name": "l", "type": "long_running", "hours": "1.5"})) == 3


def test_idle_gpu(book: Ledger) -> None:
    rule = {"name": "i", "type": "idle_gpu", "below_pct": 10, "minutes": 30}
    # samples of "idle" in the last 30 min are all below 10 %; "busy" has a 90 % mean;
    # "big" has no utilisation at all: nothing is said about it
    assert fired(book, rule) == [("i", "session:4")]
    assert fired(book, {**rule, "minutes": 180}) == []  # not running that long yet
    assert fired(book, {**rule, "below_pct": 4}) == []  # one sample at 5 %


def test_console_dedup_and_history(book: Ledger) -> None:
    from ledger.alerts.check import history

    s = settings({"name": "l", "type": "long_running", "hours": 12})
    out = io.StringIO()
    first = run_checks(book, s, out=out)
    assert [d.status for d in first.deliveries] == ["sent"]
    assert "ALERT [gpuhire] l: runpod t4 session 3" in out.getvalue()
    second = run_checks(book, s, out=out)
    assert [d.status for d in second.deliveries] == ["already-sent"]
    assert out.getvalue().count("ALERT") == 1
    rows = history(book)
    assert [(r.rule, r.period, r.channel, r.status, r.attempts) for r in rows] == [
        ("l", "session:3", "console", "sent", 1)]


def test_dry_run_writes_nothing(book: Ledger) -> None:
    from ledger.alerts.check import history

    s = settings({"name": "l", "type": "long_running", "hours": 12})
    out = io.StringIO()
    result = run_checks(book, s, dry_run=True, out=out)
    assert [d.status for d in result.deliveries] == ["dry-run"]
    assert out.getvalue() == "" and history(book) == []


def test_job_budget_alerts_for_a_job_already_stopped_at_its_cap(ledger: Ledger) -> None:
    """The launcher stopped the job at its cap: no session is open, it must alert all the same."""
    book = Ledger(ledger.engine, now=lambda: NOW)
    book.create_job(Job(id="capped", kind="train", max_usd=D("5")))
    book.create_job(Job(id="cheap", kind="train", max_usd=D("5")))
    book.create_job(Job(id="nocap", kind="train"))
    book.record_sessions([
        # two closed sessions, 3.00 + 2.50 = 5.50 > 5.00 (neither alone passes the cap)
        (NewSession("runpod", "t4", t("2026-10-31T21:00"), D("1.00"), job_id="capped",
                    end_at=t("2026-11-01T00:00"), end_reason="user"), DEFAULT_RULES),
        (NewSession("runpod", "t4", t("2026-11-10T08:00"), D("1.00"), job_id="capped",
                    end_at=t("2026-11-10T10:30"), end_reason="user"), DEFAULT_RULES),
        (NewSession("runpod", "t4", t("2026-11-10T08:00"), D("1.00"), job_id="cheap",
                    end_at=t("2026-11-10T12:00")), DEFAULT_RULES),
        (NewSession("runpod", "t4", t("2026-11-10T08:00"), D("9.00"), job_id="nocap",
                    end_at=t("2026-11-10T12:00")), DEFAULT_RULES),
    ])
    rule = {"name": "j", "type": "job_budget"}
    first = run_checks(book, settings(rule), out=io.StringIO())
    assert [(a.period, a.fields["cost_usd"], a.fields["cap_usd"]) for a in first.fired] == [
        ("job:capped", D("5.5"), D("5"))]
    assert [d.status for d in first.deliveries] == ["sent"]
    second = run_checks(book, settings(rule), out=io.StringIO())
    assert [d.status for d in second.deliveries] == ["already-sent"]  # once per job
    # A rule-wide cap covers the job without one of its own (36.00 > 20.00).
    assert fired(book, {"name": "k", "type": "job_budget", "cap_usd": "20"}) == [
        ("k", "job:capped"), ("k", "job:nocap")]
