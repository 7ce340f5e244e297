"""Evaluating alert rules against the ledger: each rule says what fired, and for which period.

A rule fires an `Alert` keyed by (rule name, period); the period is what makes it fire once:
`2026-11:80` for the 80 % level of November's budget, `job:j42` for a job over its cap,
`session:17` for a machine left running. Evaluation reads only; sending is `ledger.alerts.check`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from ledger.advice import advise_from_ledger
from ledger.alerts.config import (
    AlertsSettings,
    BuySignalRule,
    IdleGpuRule,
    JobBudgetRule,
    LongRunningRule,
    MonthlyBudgetRule,
    RentFractionRule,
    Rule,
)
from ledger.book import Ledger
from ledger.catalogue import CardProfile
from ledger.errors import GpuhireError
from ledger.idle import idle_usd, session_util
from ledger.models import Job
from ledger.money import usd
from ledger.ownership import OwnershipParams
from ledger.timeutil import as_utc, month_end, month_of, month_start, prev_month


class SettingsLike(Protocol):
    """What the checks need from the launcher's Settings."""

    @property
    def alerts(self) -> AlertsSettings: ...

    def card(self, name: str | None = None) -> CardProfile: ...

    def ownership_params(self) -> OwnershipParams: ...


@dataclass(frozen=True)
class Alert:
    """One rule firing for one period."""

    rule: str
    period: str
    subject: str
    text: str
    channels: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)


def job_over_cap(ledger: Ledger, job_id: str, cap_usd: Decimal) -> bool:
    """True once the job's cost has passed `cap_usd`: the launcher stops hard-capped jobs."""
    return ledger.job_usd(job_id) > cap_usd


def monthly_budget(ledger: Ledger, rule: MonthlyBudgetRule, now: datetime) -> list[Alert]:
    month = month_of(now)
    spend = ledger.month_usage([month])[month][0]
    out = []
    for level in rule.levels_pct:
        if spend >= rule.budget_usd * level / 100:
            out.append(_alert(rule, f"{month}:{level}%",
                              f"{month} rent {usd(spend)} passed {level}% of the "
                              f"{usd(rule.budget_usd)} budget",
                              spend_usd=spend, budget_usd=rule.budget_usd, level_pct=level))
    start, end = month_start(month), month_end(month)
    elapsed = as_utc(now) - start
    # Projecting from the first hours of a month is noise: wait for a whole day.
    if rule.projected and elapsed >= timedelta(days=1) and spend < rule.budget_usd:
        projected = spend * Decimal((end - start).total_seconds()) / Decimal(
            elapsed.total_seconds())
        if projected > rule.budget_usd:
            out.append(_alert(rule, f"{month}:projected",
                              f"{month} rent is on course for {usd(projected)}, over the "
                              f"{usd(rule.budget_usd)} budget ({usd(spend)} so far)",
                              spend_usd=spend, projected_usd=projected,
                              budget_usd=rule.budget_usd))
    return out


def job_budget(ledger: Ledger, rule: JobBudgetRule, now: datetime) -> list[Alert]:
    """Every job whose sessions, open or closed, cost more than its cap: a job the launcher
    already stopped at its cap has no open session left, and must alert all the same (once:
    the period is the job)."""
    out = []
    caps = {job.id: job.max_usd for job in ledger.jobs()}
    for job_id, cost in sorted(ledger.job_costs().items()):
        own_cap = caps.get(job_id)
        cap = own_cap if own_cap is not None else rule.cap_usd
        if cap is None:
            continue
        if cost > cap:
            out.append(_alert(rule, f"job:{job_id}",
                              f"job {job_id} has cost {usd(cost)}, over its "
                              f"{usd(cap)} cap", job=job_id, cost_usd=cost, cap_usd=cap))
    return out


def buy_signal(ledger: Ledger, rule: BuySignalRule, now: datetime,
               settings: SettingsLike) -> list[Alert]:
    card, params = settings.card(rule.card), settings.ownership_params()
    current = advise_from_ledger(ledger, card, params, now)
    before = advise_from_ledger(ledger, card, params, month_start(prev_month(month_of(now))))
    if current.verdict not in rule.verdicts or current.verdict == before.verdict:
        return []
    last = current.months[-1].month
    return [_alert(rule, f"{last}:{current.verdict}",
                   f"buy signal for the {card.label} turned {current.verdict.upper()} "
                   f"(was {before.verdict}): {current.reason}",
                   card=card.name, verdict=current.verdict, previous=before.verdict)]


def rent_fraction(ledger: Ledger, rule: RentFractionRule, now: datetime,
                  settings: SettingsLike) -> list[Alert]:
    card = settings.card(rule.card)
    rent = ledger.cumulative_rent(month_of(now))
    out = []
    for fraction in rule.fractions:
        if rent >= card.price_usd * fraction:
            out.append(_alert(rule, f"{card.name}:{fraction}",
                              f"all rent so far, {usd(rent)}, passed {fraction * 100:g}% of "
                              f"the {card.label}'s price ({usd(card.price_usd)})",
                              card=card.name, rent_usd=rent, fraction=fraction))
    return out


def long_running(ledger: Ledger, rule: LongRunningRule, now: datetime) -> list[Alert]:
    out = []
    for view in ledger.sessions(open_only=True):
        s = view.session
        hours = Decimal((as_utc(now) - s.start_at).total_seconds()) / 3600
        if hours > rule.hours:
            out.append(_alert(rule, f"session:{s.id}",
                              f"{s.provider} {s.gpu_model} session {s.id} "
                              f"({s.instance_id or 'no instance id'}) has run "
                              f"{hours:.1f} h, over {rule.hours} h; {usd(view.cost.total_usd)} "
                              "so far", session=s.id, hours=hours))
    return out


def _samples(job: Job | None) -> list[tuple[datetime, float]]:
    """`Job.metrics["gpu_util_samples"]`: [[ISO time, utilisation 0..1], ...]."""
    from ledger.timeutil import parse_time

    raw = (job.metrics or {}).get("gpu_util_samples", []) if job else []
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append((parse_time(str(item[0])), float(item[1])))
        except (ValueError, TypeError, IndexError, GpuhireError):
            continue  # a malformed sample is skipped, not fatal
    return out


def idle_gpu(ledger: Ledger, rule: IdleGpuRule, now: datetime) -> list[Alert]:
    out = []
    limit = float(rule.below_pct) / 100
    window = timedelta(minutes=rule.minutes)
    for view in ledger.sessions(open_only=True):
        s = view.session
        if as_utc(now) - s.start_at < window:
            continue
        job = None
        if s.job_id:
            with ledger.reading() as db:
                job = db.get(Job, s.job_id)
        recent = [u for t, u in _samples(job) if t >= as_utc(now) - window]
        if recent:
            low, util = all(u < limit for u in recent), max(recent)
        else:
            mean = s.gpu_util_mean if s.gpu_util_mean is not None else (job.gpu_util if job
                                                                         else None)
            if mean is None:
                continue  # utilisation unknown: say nothing rather than guess
            low, util = mean < limit, mean
        if low:
            # What the session has cost so far on an idle GPU (ledger/idle.py), when known.
            mean_util = session_util(s, job)
            idle = None if mean_util is None else idle_usd(view.cost.total_usd, mean_util)
            spent = "" if idle is None else (f"; {usd(idle)} of its {usd(view.cost.total_usd)} "
                                             "so far paid for an idle GPU")
            out.append(_alert(rule, f"session:{s.id}",
                              f"GPU of session {s.id} ({s.gpu_model}) below {rule.below_pct}% "
                              f"for {rule.minutes} min (at most {util * 100:.0f}%){spent}",
                              session=s.id, util=util, idle_usd=idle))
    return out


def _alert(rule: Rule, period: str, text: str, **fields: Any) -> Alert:
    return Alert(rule=rule.name, period=period, subject=f"[gpuhire] {rule.name}: {text[:80]}",
                 text=text, channels=tuple(rule.channels),
                 fields={"rule": rule.name, "type": rule.type, "period": period, **fields})


def evaluate(ledger: Ledger, rule: Rule, settings: SettingsLike, now: datetime) -> list[Alert]:
    """What `rule` fires now."""
    simple: dict[type, Callable[..., list[Alert]]] = {
        MonthlyBudgetRule: monthly_budget, JobBudgetRule: job_budget,
        LongRunningRule: long_running, IdleGpuRule: idle_gpu,
    }
    if isinstance(rule, BuySignalRule):
        return buy_signal(ledger, rule, now, settings)
    if isinstance(rule, RentFractionRule):
        return rent_fraction(ledger, rule, now, settings)
    return simple[type(rule)](ledger, rule, now)
