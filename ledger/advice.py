"""The buy signal read from the books, and the buy signal as text and as JSON.

`advise_from_ledger` feeds the ledger's usage to the pure ownership model (`ledger.ownership`);
`advice_dict` is the stable JSON of `gpuhire advise` (docs/json.md), `advice_text` its text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.book import Ledger
from ledger.catalogue import CardProfile
from ledger.money import rounded, usd
from ledger.ownership import Advice, MonthUsage, OwnershipParams, advise
from ledger.timeutil import last_complete_month, months_back


def window(as_of: datetime, window_months: int) -> list[str]:
    """The `window_months` complete months before `as_of`'s month, oldest first."""
    return months_back(last_complete_month(as_of), window_months)


def advise_from_ledger(
    ledger: Ledger, card: CardProfile, params: OwnershipParams, as_of: datetime
) -> Advice:
    """The verdict for `card` over the complete months before `as_of` (rent only, not owned)."""
    months = window(as_of, params.window_months)
    usage = ledger.month_usage(months)
    rows = [MonthUsage(m, usage[m][0], usage[m][1]) for m in months]
    return advise(rows, card, params, ledger.cumulative_rent(months[-1]))


def advice_dict(a: Advice) -> dict[str, Any]:
    """The stable JSON of `gpuhire advise` (docs/json.md); Decimals stay Decimal."""
    return {
        "verdict": a.verdict,
        "card": a.card.name,
        "window_months": a.window_months,
        "months": [m.month for m in a.months],
        "rent_usd_per_month": a.rent_usd_per_month,
        "own_fixed_usd_per_month": a.own_fixed_usd_per_month,
        "own_running_usd_per_month": a.own_running_usd_per_month,
        "payback_months": a.payback_months,
        "breakeven_hours_per_month": a.breakeven_hours_per_month,
        "cumulative_rent_usd": a.cumulative_rent_usd,
        "reason": a.reason,
        "by_month": [
            {"month": m.month, "rent_usd": m.rent_usd, "gpu_hours": m.gpu_hours,
             "own_running_usd": m.own_running_usd, "savings_usd": m.savings_usd,
             "exceeds_owning": m.exceeds}
            for m in a.months
        ],
    }


def payback_text(a: Advice) -> str:
    return "never" if a.payback_months is None else f"{rounded(a.payback_months)} months"


def breakeven_text(a: Advice) -> str:
    if a.breakeven_hours_per_month is None:
        return "-"
    return f"{rounded(a.breakeven_hours_per_month)} GPU-hours/month"


def advice_text(a: Advice) -> str:
    """`gpuhire advise` for people: the verdict, the numbers that decided it, month by month."""
    lines = [
        f"verdict: {a.verdict.upper()}  ({a.card.label}, {usd(a.card.price_usd, 0)})",
        f"window: {a.months[0].month} .. {a.months[-1].month} ({a.window_months} complete months)",
        f"rent per month:         {usd(a.rent_usd_per_month)}",
        f"owning, fixed/month:    {usd(a.own_fixed_usd_per_month)}"
        f"  (price x (1 - {a.card.resale_fraction}) / {a.card.lifetime_months})",
        f"owning, running/month:  {usd(a.own_running_usd_per_month)}",
        f"payback:                {payback_text(a)}",
        f"break-even use:         {breakeven_text(a)}",
        f"cumulative rent:        {usd(a.cumulative_rent_usd)}",
    ]
    for m in a.months:
        mark = "rent > owning" if m.exceeds else "owning >= rent"
        lines.append(
            f"  {m.month}: rent {usd(m.rent_usd)}, {rounded(m.gpu_hours)} GPU-h, "
            f"own running {usd(m.own_running_usd)} ({mark})"
        )
    lines.append(f"why: {a.reason}")
    return "\n".join(lines)
