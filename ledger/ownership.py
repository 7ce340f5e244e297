"""The ownership model and the buy signal: pure functions, `Decimal`, no I/O.

Formulas (docs/ledger.md, "The ownership model and the buy signal"):

* owned hours for a rented GPU-hour on GPU g = speed(g) / speed(card)
* own running cost per rented GPU-hour = speed(g) / speed(card) x (power_w + host_w) / 1000
  x usd_per_kwh
* own fixed cost per month = price_usd x (1 - resale_fraction) / lifetime_months
* per month m of the window: savings_m = rent_m - own_running_m
* payback_months = price_usd / mean(savings_m); none when mean(savings_m) <= 0
* breakeven_hours_per_month = own fixed per month / (mean rented USD per GPU-hour - own running
  per rented GPU-hour)
* verdict `buy` when payback <= buy threshold and rent_m > own fixed + own_running_m in every
  month; `watch` when payback <= watch threshold, or when some but not all months exceed;
  `rent` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.catalogue import BUILTIN_SPEEDS, CardProfile
from ledger.errors import ConfigError

ZERO = Decimal(0)


@dataclass(frozen=True)
class OwnershipParams:
    """Every number the buy signal depends on; each can be overridden in config or by a flag."""

    usd_per_kwh: Decimal = Decimal("0.30")  # electricity price
    host_w: Decimal = Decimal("60")  # the rest of the computer the card sits in
    window_months: int = 3  # complete months the verdict looks back over
    buy_payback_months: Decimal = Decimal("12")  # buy when payback is at most this
    watch_payback_months: Decimal = Decimal("24")  # watch when payback is at most this
    speeds: Mapping[str, Decimal] = field(default_factory=lambda: dict(BUILTIN_SPEEDS))


@dataclass(frozen=True)
class MonthUsage:
    """Rented work in one calendar month: USD and GPU-hours by GPU model."""

    month: str
    rent_usd: Decimal
    gpu_hours: Mapping[str, Decimal]  # gpu model -> GPU-hours rented


@dataclass(frozen=True)
class MonthVerdict:
    month: str
    rent_usd: Decimal
    gpu_hours: Decimal
    own_running_usd: Decimal
    savings_usd: Decimal
    exceeds: bool  # rent > own fixed + own running


@dataclass(frozen=True)
class Advice:
    """The verdict and every number that decided it."""

    verdict: str  # buy | watch | rent
    card: CardProfile
    window_months: int
    months: tuple[MonthVerdict, ...]
    rent_usd_per_month: Decimal
    own_fixed_usd_per_month: Decimal
    own_running_usd_per_month: Decimal
    payback_months: Decimal | None
    breakeven_hours_per_month: Decimal | None
    cumulative_rent_usd: Decimal
    reason: str


def speed_of(gpu: str, speeds: Mapping[str, Decimal]) -> Decimal:
    """The training speed of a rented GPU relative to a T4."""
    try:
        return speeds[gpu.lower()]
    except KeyError:
        raise ConfigError(
            f"no training speed is known for GPU {gpu!r}",
            f'add it to the config, e.g. [speeds] {gpu.lower()} = "2.0" (relative to a T4)',
        ) from None


def running_usd_per_hour(watts: Decimal, usd_per_kwh: Decimal) -> Decimal:
    """What an owned machine drawing `watts` costs per hour in electricity."""
    return watts / Decimal(1000) * usd_per_kwh


def own_running_per_gpu_hour(gpu: str, card: CardProfile, params: OwnershipParams) -> Decimal:
    """USD of electricity to do one rented GPU-hour of work on the owned card: the card and
    its host draw their watts for speed(gpu) / speed(card) hours."""
    ratio = speed_of(gpu, params.speeds) / card.speed
    return running_usd_per_hour(ratio * (card.power_w + params.host_w), params.usd_per_kwh)


def own_fixed_per_month(card: CardProfile) -> Decimal:
    """Depreciation of the card per month: price less resale, over its lifetime."""
    return card.price_usd * (Decimal(1) - card.resale_fraction) / Decimal(card.lifetime_months)


def month_running_usd(usage: MonthUsage, card: CardProfile, params: OwnershipParams) -> Decimal:
    """What the owned card would have spent on electricity doing this month's rented work."""
    return sum(
        (hours * own_running_per_gpu_hour(gpu, card, params)
         for gpu, hours in sorted(usage.gpu_hours.items())),
        ZERO,
    )


def advise(
    usage: list[MonthUsage],
    card: CardProfile,
    params: OwnershipParams,
    cumulative_rent_usd: Decimal,
) -> Advice:
    """The buy signal over the window's months (`usage`, one entry per month, oldest first)."""
    if len(usage) != params.window_months:
        raise ValueError("usage must hold exactly window_months months")
    fixed = own_fixed_per_month(card)
    rows = [_month_verdict(month, card, params, fixed) for month in usage]
    n = Decimal(len(rows))
    total_rent = sum((r.rent_usd for r in rows), ZERO)
    total_running = sum((r.own_running_usd for r in rows), ZERO)
    mean_savings = sum((r.savings_usd for r in rows), ZERO) / n
    payback = card.price_usd / mean_savings if mean_savings > 0 else None
    breakeven = _breakeven(rows, fixed, total_rent, total_running)

    exceeding = sum(r.exceeds for r in rows)
    verdict, reason = _verdict(payback, exceeding, len(rows), params, card)
    return Advice(
        verdict=verdict,
        card=card,
        window_months=params.window_months,
        months=tuple(rows),
        rent_usd_per_month=total_rent / n,
        own_fixed_usd_per_month=fixed,
        own_running_usd_per_month=total_running / n,
        payback_months=payback,
        breakeven_hours_per_month=breakeven,
        cumulative_rent_usd=cumulative_rent_usd,
        reason=reason,
    )


def _month_verdict(month: MonthUsage, card: CardProfile, params: OwnershipParams,
                   fixed: Decimal) -> MonthVerdict:
    running = month_running_usd(month, card, params)
    return MonthVerdict(
        month=month.month,
        rent_usd=month.rent_usd,
        gpu_hours=sum(month.gpu_hours.values(), ZERO),
        own_running_usd=running,
        savings_usd=month.rent_usd - running,
        exceeds=month.rent_usd > fixed + running,
    )


def _breakeven(rows: list[MonthVerdict], fixed: Decimal, total_rent: Decimal,
               total_running: Decimal) -> Decimal | None:
    """GPU-hours a month above which owning is cheaper; None without use or margin."""
    total_hours = sum((r.gpu_hours for r in rows), ZERO)
    if total_hours <= 0:
        return None
    margin = total_rent / total_hours - total_running / total_hours
    return fixed / margin if margin > 0 else None


def _verdict(
    payback: Decimal | None,
    exceeding: int,
    months: int,
    params: OwnershipParams,
    card: CardProfile,
) -> tuple[str, str]:
    every = exceeding == months
    some = 0 < exceeding < months
    shown = "never (no monthly savings)" if payback is None else f"{payback:.1f} months"
    if payback is not None and payback <= params.buy_payback_months and every:
        return "buy", (
            f"the {card.label} would pay for itself in {shown} (at most "
            f"{params.buy_payback_months}), and rent beat its monthly cost in all "
            f"{months} months"
        )
    if payback is not None and payback <= params.watch_payback_months:
        return "watch", (
            f"the {card.label} would pay for itself in {shown}: within "
            f"{params.watch_payback_months} months but "
            + ("not every month's rent beat owning" if not every
               else f"above the {params.buy_payback_months}-month buy threshold")
        )
    if some:
        return "watch", (
            f"rent beat the {card.label}'s monthly cost in {exceeding} of {months} months, "
            f"but its payback is {shown}"
        )
    if payback is None:
        return "rent", (
            f"the {card.label} would never pay for itself at this use: renting stays cheaper"
        )
    return "rent", (
        f"the {card.label} would pay for itself in {shown}: renting stays cheaper "
        f"(buy at a payback of at most {params.buy_payback_months} months)"
    )
