"""The buy signal read from the books: the ledger's usage fed to the pure ownership model."""

from __future__ import annotations

from datetime import datetime

from ledger.book import Ledger
from ledger.catalogue import CardProfile
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
