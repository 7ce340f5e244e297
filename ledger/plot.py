"""Rent against owning, month by month: the series (pure) and the chart (matplotlib, Agg).

The owning line starts at the card's price (bought in the first month) and climbs by the
electricity the card would have used for the same work; the rent line is what was paid. Where
rent first reaches owning is the crossover: from there on, the card would have been cheaper.
matplotlib is imported inside `render_chart` only, so nothing else pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func
from sqlmodel import col, select

from ledger.book import Ledger
from ledger.catalogue import CardProfile
from ledger.errors import GpuhireError, InputError
from ledger.models import CostLine
from ledger.ownership import MonthUsage, OwnershipParams, month_running_usd
from ledger.timeutil import months_back

RENT_COLOUR = "#d62728"  # red: money gone
OWN_COLOUR = "#1f77b4"  # blue: the card
CROSS_COLOUR = "#2ca02c"


@dataclass(frozen=True)
class OwnershipSeries:
    """Cumulative rent and cumulative cost of owning, one point per month, oldest first."""

    card: CardProfile
    months: tuple[str, ...]
    rent_usd: tuple[Decimal, ...]  # cumulative rent through each month
    own_usd: tuple[Decimal, ...]  # card price + cumulative running cost of the same work
    crossover_month: str | None  # first month where rent >= owning
    crossover_usd: Decimal | None  # cumulative rent in that month


def ownership_series(
    usage: list[MonthUsage], card: CardProfile, params: OwnershipParams
) -> OwnershipSeries:
    """The two cumulative lines and their crossover, from monthly usage (oldest first)."""
    rent, own = Decimal(0), card.price_usd
    rents: list[Decimal] = []
    owns: list[Decimal] = []
    cross_month: str | None = None
    cross_usd: Decimal | None = None
    for month in usage:
        rent += month.rent_usd
        own += month_running_usd(month, card, params)
        rents.append(rent)
        owns.append(own)
        if cross_month is None and rent >= own:
            cross_month, cross_usd = month.month, rent
    return OwnershipSeries(
        card, tuple(u.month for u in usage), tuple(rents), tuple(owns), cross_month, cross_usd
    )


def first_rent_month(ledger: Ledger) -> str | None:
    """The earliest month with rent in the ledger (closed sessions), or None."""
    with ledger.reading() as db:
        stmt = select(func.min(CostLine.month)).where(col(CostLine.owned).is_(False))
        first: str | None = db.exec(stmt).one()
    return first


def series_from_ledger(
    ledger: Ledger, through: str, card: CardProfile, params: OwnershipParams, max_months: int = 36
) -> OwnershipSeries:
    """The series from the first month with rent (at most `max_months` back) to `through`."""
    first = first_rent_month(ledger) or through
    months = [m for m in months_back(through, max_months) if m >= min(first, through)]
    usage = ledger.month_usage(months)
    rows = [MonthUsage(m, usage[m][0], usage[m][1]) for m in months]
    return ownership_series(rows, card, params)


def report_chart(ledger: Ledger, month: str, card: CardProfile, params: OwnershipParams, *,
                 plot: Path | None, needed: bool, warn: Callable[[str], None]) -> bytes | None:
    """The chart of a monthly report as PNG, for the HTML page or the mail.

    With `plot`, it is also drawn to that file (PNG or SVG by its suffix), and a chart that
    cannot be drawn is an error; drawn only because it is `needed`, a failure is a warning
    passed to `warn` and the report stands without its picture."""
    if plot is not None:
        series = series_from_ledger(ledger, month, card, params)
        render_chart(series, plot)
        return render_chart(series, None, "png")
    if not needed:
        return None
    try:
        return render_chart(series_from_ledger(ledger, month, card, params), None, "png")
    except GpuhireError as exc:
        warn(f"warning: no chart: {exc}")
        return None


def render_chart(series: OwnershipSeries, path: Path | None = None, fmt: str = "png") -> bytes:
    """Draw the chart; write it to `path` when given (format from its suffix). Returns the bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # headless: no display, same output everywhere
    import matplotlib.pyplot as plt

    if path is not None:
        fmt = path.suffix.lstrip(".").lower() or fmt
    x = list(range(len(series.months)))
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        ax.plot(x, [float(v) for v in series.rent_usd], color=RENT_COLOUR, linewidth=2.5,
                marker="o", label="cumulative rent")
        ax.plot(x, [float(v) for v in series.own_usd], color=OWN_COLOUR, linewidth=2.5,
                marker="s", label=f"owning a {series.card.label} (price + electricity)")
        if series.crossover_month is not None and series.crossover_usd is not None:
            cx = series.months.index(series.crossover_month)
            cy = float(series.crossover_usd)
            ax.scatter([cx], [cy], s=160, color=CROSS_COLOUR, zorder=5, label="crossover")
            ax.annotate(f"crossover {series.crossover_month}\n${cy:,.0f}", (cx, cy),
                        textcoords="offset points", xytext=(-60, 18), color=CROSS_COLOUR)
        else:
            ax.text(0.99, 0.5, "no crossover yet:\nowning stays dearer", transform=ax.transAxes,
                    ha="right", va="center", color="#555555")
        ax.set_xticks(x, list(series.months), rotation=45 if len(x) > 8 else 0)
        ax.set_xlabel("month")
        ax.set_ylabel("cumulative USD")
        ax.set_title(f"Rent vs owning a {series.card.label}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise InputError(f"cannot write the chart to {path}: {exc.strerror}",
                             "check that its folder exists and that you may write there") from None
    return data
