"""The monthly report: pure data computed from the ledger, exact `Decimal`, no rendering.

Closed sessions are summed in SQL from `cost_lines` (one row per session and month), joined
with their session (on-demand price, end reason, utilisation) and job (utilisation); running
sessions are costed live and folded into the same groups. Rendering lives in
`ledger.report_formats`, the chart in `ledger.plot`.

What each number means (docs/reports.md):

* spot savings: on-demand price stored with the session x billed hours, less the spot compute
  paid; sessions without a stored on-demand price are counted as `unknown`, never guessed;
* interruptions: sessions EC2 took back (`spot-interruption`) and the USD and hours they cost;
* idle USD: rent x (1 - mean GPU utilisation), where utilisation is known (session's mean,
  else the job's);
* owned hardware (local, ssh) is shown apart at its running cost, never as rent;
* inference: pages of the `gpuhire infer` jobs that ended in the month and what they cost,
  against the commercial per-page price of `[compare]` (ledger/compare.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from ledger.advice import advise_from_ledger
from ledger.book import Ledger
from ledger.catalogue import CardProfile
from ledger.compare import CompareSettings, Comparison, commercial_comparison
from ledger.costs import MICROS_PER_S, SECONDS_PER_HOUR
from ledger.errors import GpuhireError
from ledger.models import CostLine, Job, RentalSession
from ledger.ownership import Advice, OwnershipParams
from ledger.timeutil import month_end, month_start, prev_month

ZERO = Decimal(0)
_HOUR = SECONDS_PER_HOUR


def _hours(micros: Any) -> Decimal:
    """Hours from a sum of stored microseconds."""
    return Decimal(micros) / MICROS_PER_S / _HOUR


@dataclass(frozen=True)
class Fact:
    """One group of session-month costs sharing every attribute the report splits by."""

    owned: bool
    provider: str
    gpu_model: str
    market: str
    job_id: str | None
    on_demand_usd_per_hour: Decimal | None
    interrupted: bool  # ended by a spot interruption
    util: float | None  # mean GPU utilisation 0..1, when known
    sessions: int
    compute_usd: Decimal
    storage_usd: Decimal
    ipv4_usd: Decimal
    gpu_hours: Decimal
    billed_hours: Decimal
    hours: Decimal  # wall hours in the month
    running: bool = False

    @property
    def total_usd(self) -> Decimal:
        return self.compute_usd + self.storage_usd + self.ipv4_usd


@dataclass(frozen=True)
class Part:
    """A slice of the month's rent: one GPU model, provider, market or job."""

    key: str
    usd: Decimal
    gpu_hours: Decimal
    sessions: int


@dataclass(frozen=True)
class SpotSavings:
    spot_compute_usd: Decimal  # paid for spot compute where the on-demand price is known
    on_demand_usd: Decimal  # the same billed hours at the stored on-demand price
    savings_usd: Decimal  # on_demand_usd - spot_compute_usd
    sessions_known: int
    sessions_unknown: int  # spot sessions with no stored on-demand price
    unknown_compute_usd: Decimal  # their spot compute, left out of the savings


@dataclass(frozen=True)
class Interruptions:
    count: int  # session-months ended by an EC2 spot interruption
    usd: Decimal  # what those sessions cost in the month
    hours: Decimal  # wall hours of work they ran before being taken back


@dataclass(frozen=True)
class Idle:
    idle_usd: Decimal  # rent x (1 - mean utilisation)
    rent_with_util_usd: Decimal  # rent of the sessions whose utilisation is known
    sessions_known: int
    sessions_unknown: int


@dataclass(frozen=True)
class Owned:
    """The user's own hardware: hours and running cost, not rent."""

    gpu_hours: Decimal
    running_usd: Decimal
    sessions: int
    by_gpu: tuple[Part, ...]


@dataclass(frozen=True)
class Inference:
    """The month's `gpuhire infer` jobs: pages recognised, what they cost, and the comparison."""

    jobs: int
    pages: int
    usd: Decimal  # the jobs' sessions: rent, owned ones at running cost, running ones to now
    comparison: Comparison | None  # None when no page was recognised


def inference(ledger: Ledger, month: str, compare: CompareSettings) -> Inference:
    """Infer jobs that ended in `month` with a page count (`metrics.pages`: calibrations and
    stopped jobs have none); each job's USD is all its sessions', as its pages are all counted."""
    ended = col(Job.ended_at)
    stmt = select(Job).where(Job.kind == "infer", ended >= month_start(month), ended < month_end(month))
    with ledger.reading() as db:
        counted = [(j.id, j.metrics["pages"]) for j in db.exec(stmt)
                   if type(j.metrics.get("pages")) is int and j.metrics["pages"] > 0]
    pages = sum(n for _, n in counted)
    usd = sum((ledger.job_usd(job_id) for job_id, _ in counted), ZERO)
    return Inference(len(counted), pages, usd, commercial_comparison(pages, usd, compare))


@dataclass(frozen=True)
class MonthlyReport:
    month: str
    generated_at: datetime
    total_usd: Decimal
    gpu_hours: Decimal
    compute_usd: Decimal
    storage_usd: Decimal
    ipv4_usd: Decimal
    sessions: int
    running_sessions: int  # costed up to generated_at
    by_gpu: tuple[Part, ...]
    by_provider: tuple[Part, ...]
    by_market: tuple[Part, ...]
    by_job: tuple[Part, ...]
    spot: SpotSavings
    interruptions: Interruptions
    idle: Idle
    owned: Owned
    previous_month: str
    previous_total_usd: Decimal
    change_usd: Decimal
    change_pct: Decimal | None  # None when the previous month had no rent
    advice: Advice | None = field(default=None)
    advice_error: str | None = None  # why there is no buy signal (e.g. a GPU of unknown speed)
    inference: Inference | None = None  # the month's infer jobs against a commercial price


def closed_facts(ledger: Ledger, month: str) -> list[Fact]:
    """The month's closed-session costs, grouped in SQL by every attribute the report uses."""
    cl, rs = CostLine, RentalSession
    util = func.coalesce(col(rs.gpu_util_mean), col(Job.gpu_util))
    interrupted = col(rs.end_reason) == "spot-interruption"
    keys: tuple[Any, ...] = (
        col(cl.owned), col(cl.provider), col(cl.gpu_model), col(cl.market), col(cl.job_id),
        col(rs.on_demand_usd_per_hour), interrupted, util,
    )
    stmt = (
        sa_select(*keys, func.count(), *(func.sum(col(c)) for c in (
            cl.compute_usd, cl.storage_usd, cl.ipv4_usd, cl.gpu_us, cl.billed_us, cl.duration_us)))
        .select_from(cl)
        .join(rs, col(rs.id) == col(cl.session_id))
        .outerjoin(Job, col(Job.id) == col(cl.job_id))
        .where(col(cl.month) == month)
        .group_by(*keys)
    )
    facts = []
    with ledger.reading() as db:
        for row in db.connection().execute(stmt):
            owned, prov, gpu, market, job, od, intr, u, n, c, s, i, g, b, d = row
            facts.append(Fact(
                owned=bool(owned), provider=prov, gpu_model=gpu, market=market, job_id=job,
                on_demand_usd_per_hour=od,
                interrupted=bool(intr), util=None if u is None else float(u), sessions=int(n),
                # sums of NanoUSD columns come back as USD Decimals already
                compute_usd=Decimal(c), storage_usd=Decimal(s), ipv4_usd=Decimal(i),
                gpu_hours=_hours(g), billed_hours=_hours(b), hours=_hours(d),
            ))
    return facts


def running_facts(ledger: Ledger, month: str) -> list[Fact]:
    """Running sessions that reach into the month, costed up to the ledger's now."""
    facts = []
    for view in ledger.sessions(month, open_only=True):
        s = view.session
        util = s.gpu_util_mean
        if util is None and s.job_id is not None:
            with ledger.reading() as db:
                job = db.get(Job, s.job_id)
            util = job.gpu_util if job is not None else None
        for m in view.cost.months:
            facts.append(Fact(
                owned=s.owned, provider=s.provider, gpu_model=s.gpu_model, market=s.market,
                job_id=s.job_id, on_demand_usd_per_hour=s.on_demand_usd_per_hour,
                interrupted=False, util=util, sessions=1, compute_usd=m.compute_usd,
                storage_usd=m.storage_usd, ipv4_usd=m.ipv4_usd, gpu_hours=m.gpu_s / _HOUR,
                billed_hours=m.billed_s / _HOUR, hours=m.duration_s / _HOUR, running=True,
            ))
    return facts


def _parts(facts: Iterable[Fact], key: str) -> tuple[Part, ...]:
    acc: dict[str, tuple[Decimal, Decimal, int]] = {}
    for f in facts:
        name = getattr(f, key) or "(none)"
        usd, hours, n = acc.get(name, (ZERO, ZERO, 0))
        acc[name] = (usd + f.total_usd, hours + f.gpu_hours, n + f.sessions)
    parts = [Part(k, u, h, n) for k, (u, h, n) in acc.items()]
    return tuple(sorted(parts, key=lambda p: (-p.usd, p.key)))


def spot_savings(facts: Iterable[Fact]) -> SpotSavings:
    """Savings of spot against the on-demand price stored with each session."""
    paid = on_demand = unknown_usd = ZERO
    known = unknown = 0
    for f in facts:
        if f.market != "spot":
            continue
        if f.on_demand_usd_per_hour is None:
            unknown += f.sessions
            unknown_usd += f.compute_usd
            continue
        known += f.sessions
        paid += f.compute_usd
        on_demand += f.billed_hours * f.on_demand_usd_per_hour
    return SpotSavings(paid, on_demand, on_demand - paid, known, unknown, unknown_usd)


def interruptions(facts: Iterable[Fact]) -> Interruptions:
    chosen = [f for f in facts if f.interrupted]
    return Interruptions(
        count=sum(f.sessions for f in chosen),
        usd=sum((f.total_usd for f in chosen), ZERO),
        hours=sum((f.hours for f in chosen), ZERO),
    )


def idle(facts: Iterable[Fact]) -> Idle:
    idle_usd = with_util = ZERO
    known = unknown = 0
    for f in facts:
        if f.util is None:
            unknown += f.sessions
            continue
        known += f.sessions
        with_util += f.total_usd
        # utilisation is stored as a float; go through str so the Decimal stays short.
        idle_usd += f.total_usd * (1 - Decimal(str(f.util)))
    return Idle(idle_usd, with_util, known, unknown)


def owned_part(facts: list[Fact]) -> Owned:
    return Owned(
        gpu_hours=sum((f.gpu_hours for f in facts), ZERO),
        running_usd=sum((f.total_usd for f in facts), ZERO),
        sessions=sum(f.sessions for f in facts),
        by_gpu=_parts(facts, "gpu_model"),
    )


def build_report(
    ledger: Ledger,
    month: str,
    card: CardProfile | None = None,
    params: OwnershipParams | None = None,
    compare: CompareSettings | None = None,
) -> MonthlyReport:
    """The report for `month`; with a card, the buy signal as of the day after the month;
    the month's inference against `compare`'s price (default: [compare]'s documented default)."""
    facts = closed_facts(ledger, month) + running_facts(ledger, month)
    rent = [f for f in facts if not f.owned]
    total = sum((f.total_usd for f in rent), ZERO)
    prev = prev_month(month)
    prev_total = ledger.month_usage([prev])[prev][0]
    change = total - prev_total
    advice, advice_error = None, None
    if card is not None and params is not None:
        try:
            advice = advise_from_ledger(ledger, card, params, month_end(month))
        except GpuhireError as exc:  # the money numbers still stand without the buy signal
            advice_error = str(exc)
    return MonthlyReport(
        month=month,
        generated_at=ledger.now(),
        total_usd=total,
        gpu_hours=sum((f.gpu_hours for f in rent), ZERO),
        compute_usd=sum((f.compute_usd for f in rent), ZERO),
        storage_usd=sum((f.storage_usd for f in rent), ZERO),
        ipv4_usd=sum((f.ipv4_usd for f in rent), ZERO),
        sessions=sum(f.sessions for f in rent),
        running_sessions=sum(f.sessions for f in rent if f.running),
        by_gpu=_parts(rent, "gpu_model"),
        by_provider=_parts(rent, "provider"),
        by_market=_parts(rent, "market"),
        by_job=_parts(rent, "job_id"),
        spot=spot_savings(rent),
        interruptions=interruptions(rent),
        idle=idle(rent),
        owned=owned_part([f for f in facts if f.owned]),
        previous_month=prev,
        previous_total_usd=prev_total,
        change_usd=change,
        change_pct=None if prev_total == 0 else change * 100 / prev_total,
        advice=advice,
        advice_error=advice_error,
        inference=inference(ledger, month, compare or CompareSettings()),
    )
