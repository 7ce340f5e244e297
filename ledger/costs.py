"""The cost model: pure functions, `Decimal` dollars, UTC times, no I/O.

Rules (docs/ledger.md, "The cost model"; AWS billing as documented for Linux instances, its
sources and date in ledger.catalogue):

* Compute is billed per second with a minimum (`min_billed_s`, 60 on AWS, 0 elsewhere unless a
  provider entry says otherwise): billed seconds = max(minimum, ceil(end - start)). The billed
  span is [start, start + billed seconds), and each second costs the price in force at that
  moment, read piecewise from the session's stored price points.
* A spot session that EC2 interrupted (end reason `spot-interruption`) within its first
  `interruption_free_s` seconds (3,600 on AWS) costs nothing for compute.
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/billing-for-interrupted-spot-instances.html
* EBS: volume_gb x USD per GB-month, one GB-month = 730 h, prorated over the session's seconds.
* Public IPv4: USD per hour over the session's seconds.
* A running session is costed up to `now` and marked running.
* A session that spans months is split by the seconds that fall in each month.

Nothing is rounded here: callers round for display only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from ledger.timeutil import as_utc, split_by_month

SECONDS_PER_HOUR = Decimal(3600)
HOURS_PER_GB_MONTH = Decimal(730)
MICROS_PER_S = Decimal(1_000_000)

END_REASONS = ("completed", "user", "spot-interruption", "unknown")
MARKETS = ("spot", "on-demand")


@dataclass(frozen=True)
class PriceAt:
    """A price in force from a moment on, until the next one."""

    in_force_from: datetime
    usd_per_hour: Decimal


@dataclass(frozen=True)
class CostInput:
    """Everything the cost of one rental session depends on; all of it stored in the ledger."""

    start_at: datetime
    end_at: datetime | None  # None while running
    prices: tuple[PriceAt, ...]  # the session's price points, any order
    market: str = "on-demand"
    end_reason: str | None = None
    min_billed_s: int = 0  # AWS: 60
    interruption_free_s: int = 0  # AWS spot: 3600
    volume_gb: int = 0
    ebs_usd_per_gb_month: Decimal = Decimal(0)
    public_ipv4: bool = False
    ipv4_usd_per_hour: Decimal = Decimal(0)
    gpu_count: int = 1


@dataclass(frozen=True)
class MonthCost:
    """The part of a session that falls in one calendar month."""

    month: str
    compute_usd: Decimal
    storage_usd: Decimal
    ipv4_usd: Decimal
    duration_s: Decimal  # wall seconds of the session in this month
    billed_s: Decimal  # compute seconds billed in this month (minimum included)
    gpu_s: Decimal  # duration_s x gpu_count

    @property
    def total_usd(self) -> Decimal:
        return self.compute_usd + self.storage_usd + self.ipv4_usd


@dataclass(frozen=True)
class SessionCost:
    """The cost of one session, whole and split by month."""

    duration_s: Decimal
    billed_s: int
    compute_usd: Decimal
    storage_usd: Decimal
    ipv4_usd: Decimal
    running: bool
    interruption_free: bool
    months: tuple[MonthCost, ...] = field(default_factory=tuple)

    @property
    def total_usd(self) -> Decimal:
        return self.compute_usd + self.storage_usd + self.ipv4_usd


def billed_seconds(duration_s: Decimal, min_billed_s: int) -> int:
    """Whole seconds billed for a span: every started second, at least the minimum."""
    return max(min_billed_s, math.ceil(duration_s))


def is_interruption_free(inp: CostInput, duration_s: Decimal) -> bool:
    """True when EC2 took a spot instance back inside the free window."""
    return (
        inp.market == "spot"
        and inp.end_reason == "spot-interruption"
        and inp.interruption_free_s > 0
        and duration_s < inp.interruption_free_s
    )


def _price_segments(
    prices: tuple[PriceAt, ...], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, Decimal]]:
    """Cut [start, end) into pieces with one price each.

    Before the first price point the first price applies (a session always has one from its
    start; this only guards against points recorded a moment late).
    """
    if not prices:
        raise ValueError("a session needs at least one price point")
    ordered = sorted(prices, key=lambda p: as_utc(p.in_force_from))
    pieces: list[tuple[datetime, datetime, Decimal]] = []
    for index, point in enumerate(ordered):
        seg_start = start if index == 0 else max(start, as_utc(point.in_force_from))
        seg_end = end
        if index + 1 < len(ordered):
            seg_end = min(end, as_utc(ordered[index + 1].in_force_from))
        if seg_start < seg_end:
            pieces.append((seg_start, seg_end, point.usd_per_hour))
    return pieces


def _us(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(microseconds=1)) / MICROS_PER_S


def _billed_compute(
    inp: CostInput, start: datetime, billed: int, free: bool
) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Compute USD and billed seconds per month, over the billed span [start, start + billed)."""
    compute: dict[str, Decimal] = {}
    billed_by_month: dict[str, Decimal] = {}
    billed_end = start + timedelta(seconds=billed)
    for seg_start, seg_end, usd_per_hour in _price_segments(inp.prices, start, billed_end):
        for month, piece_start, piece_end in split_by_month(seg_start, seg_end):
            secs = _us(piece_end - piece_start)
            billed_by_month[month] = billed_by_month.get(month, Decimal(0)) + secs
            usd = Decimal(0) if free else secs * usd_per_hour / SECONDS_PER_HOUR
            compute[month] = compute.get(month, Decimal(0)) + usd
    return compute, billed_by_month


def _month_costs(inp: CostInput, start: datetime, end: datetime, compute: dict[str, Decimal],
                 billed_by_month: dict[str, Decimal]) -> tuple[MonthCost, ...]:
    """The session's months, oldest first: its wall seconds, disk and IPv4 in each, with the
    compute billed there."""
    months: dict[str, MonthCost] = {}
    for month, piece_start, piece_end in split_by_month(start, end):
        secs = _us(piece_end - piece_start)
        storage = (
            Decimal(inp.volume_gb) * inp.ebs_usd_per_gb_month * secs
            / (HOURS_PER_GB_MONTH * SECONDS_PER_HOUR)
        )
        ipv4 = inp.ipv4_usd_per_hour * secs / SECONDS_PER_HOUR if inp.public_ipv4 else Decimal(0)
        months[month] = MonthCost(
            month=month,
            compute_usd=compute.get(month, Decimal(0)),
            storage_usd=storage,
            ipv4_usd=ipv4,
            duration_s=secs,
            billed_s=billed_by_month.get(month, Decimal(0)),
            gpu_s=secs * inp.gpu_count,
        )
    # The minimum can carry billed compute into a month the session itself never reached.
    for month, usd in compute.items():
        if month not in months:
            zero = Decimal(0)
            months[month] = MonthCost(month, usd, zero, zero, zero, billed_by_month[month], zero)
    return tuple(months[m] for m in sorted(months))


def session_cost(inp: CostInput, now: datetime) -> SessionCost:
    """Cost one session; a running one is costed up to `now`."""
    start = as_utc(inp.start_at)
    running = inp.end_at is None
    end = as_utc(now) if inp.end_at is None else as_utc(inp.end_at)
    end = max(end, start)
    duration_s = _us(end - start)
    billed = billed_seconds(duration_s, inp.min_billed_s)
    free = is_interruption_free(inp, duration_s)
    compute, billed_by_month = _billed_compute(inp, start, billed, free)
    ordered = _month_costs(inp, start, end, compute, billed_by_month)
    return SessionCost(
        duration_s=duration_s,
        billed_s=billed,
        compute_usd=sum((m.compute_usd for m in ordered), Decimal(0)),
        storage_usd=sum((m.storage_usd for m in ordered), Decimal(0)),
        ipv4_usd=sum((m.ipv4_usd for m in ordered), Decimal(0)),
        running=running,
        interruption_free=free,
        months=ordered,
    )
