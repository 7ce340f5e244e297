"""Reading the books: sessions with their cost, and the sums the report and the advice use.

Closed sessions are summed in SQL over their stored `cost_lines`; running sessions are costed
live, up to the ledger's now, and added to the same sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from ledger.costs import MICROS_PER_S, SECONDS_PER_HOUR, SessionCost, session_cost
from ledger.models import NANO, CostLine, Job, RentalSession
from ledger.store import LedgerCore, cost_input, get_row, row_id
from ledger.timeutil import month_end, month_start

ZERO = Decimal(0)


@dataclass(frozen=True)
class SessionView:
    """A session with its cost (whole, or the part in one month)."""

    session: RentalSession
    cost: SessionCost
    usd_per_hour: Decimal  # the latest price in force

    @property
    def running(self) -> bool:
        return self.cost.running


def session_dict(v: SessionView, quote_error: float | None = None) -> dict[str, Any]:
    """One session of `gpuhire ledger list --format json|csv` (docs/json.md); `quote_error` is
    its job's (actual / quoted seconds - 1), when the job was quoted and has ended."""
    s = v.session
    return {
        "id": s.id, "provider": s.provider, "region": s.region, "zone": s.zone,
        "instance_type": s.instance_type, "instance_id": s.instance_id,
        "gpu_model": s.gpu_model, "gpu_count": s.gpu_count, "market": s.market,
        "state": s.state, "start": s.start_at, "end": s.end_at, "end_reason": s.end_reason,
        "running": v.running, "volume_gb": s.volume_gb, "public_ipv4": s.public_ipv4,
        "job": s.job_id, "note": s.note, "usd_per_hour": v.usd_per_hour,
        "on_demand_usd_per_hour": s.on_demand_usd_per_hour,
        "duration_s": v.cost.duration_s, "billed_s": v.cost.billed_s,
        "compute_usd": v.cost.compute_usd, "storage_usd": v.cost.storage_usd,
        "ipv4_usd": v.cost.ipv4_usd, "total_usd": v.cost.total_usd,
        "interruption_free": v.cost.interruption_free,
        "quote_error": None if quote_error is None else round(quote_error, 4),
    }


def _cost_lines_usd() -> Any:
    """SQL: the USD of the cost lines summed (compute, disk and IPv4), in nano-dollars."""
    return (
        func.coalesce(func.sum(CostLine.compute_usd), 0)
        + func.coalesce(func.sum(CostLine.storage_usd), 0)
        + func.coalesce(func.sum(CostLine.ipv4_usd), 0)
    )


def _usd(nano: Any) -> Decimal:
    return Decimal(nano or 0) / NANO


class Queries(LedgerCore):
    """The reads of `ledger.book.Ledger`."""

    def get_session(self, session_id: int) -> RentalSession:
        with self.reading() as db:
            return get_row(db, session_id)

    def session_view(self, session_id: int) -> SessionView:
        """One session with its whole cost (a running one costed to now)."""
        with self.reading() as db:
            row = get_row(db, session_id)
            points = self._prices(db, session_id)
        cost = session_cost(cost_input(row, points), self.now())
        return SessionView(row, cost, points[-1].usd_per_hour if points else ZERO)

    def sessions(
        self,
        month: str | None = None,
        *,
        open_only: bool = False,
        job_id: str | None = None,
    ) -> list[SessionView]:
        """Sessions with their cost; with `month`, those overlapping it, costed for that month."""
        with self.reading() as db:
            stmt = select(RentalSession).order_by(col(RentalSession.start_at))
            if open_only:
                stmt = stmt.where(col(RentalSession.end_at).is_(None))
            if job_id is not None:
                stmt = stmt.where(RentalSession.job_id == job_id)
            if month is not None:
                stmt = stmt.where(col(RentalSession.start_at) < month_end(month)).where(
                    (col(RentalSession.end_at).is_(None))
                    | (col(RentalSession.end_at) >= month_start(month))
                )
            rows = list(db.exec(stmt))
            prices = self._prices_by_session(db, [row_id(r) for r in rows])
        views = []
        for row in rows:
            points = prices.get(row_id(row), [])
            cost = session_cost(cost_input(row, points), self.now())
            if month is not None:
                cost = _only_month(cost, month)
            latest = points[-1].usd_per_hour if points else ZERO
            views.append(SessionView(row, cost, latest))
        return views

    def month_usage(
        self, months: Sequence[str], *, include_owned: bool = False
    ) -> dict[str, tuple[Decimal, dict[str, Decimal]]]:
        """Per month: USD and GPU-hours by GPU model, summed in SQL over closed sessions,
        plus the running sessions costed now. Owned hardware is left out unless asked."""
        out: dict[str, tuple[Decimal, dict[str, Decimal]]] = {m: (ZERO, {}) for m in months}
        with self.reading() as db:
            stmt = (
                select(CostLine.month, CostLine.gpu_model, _cost_lines_usd(),
                       func.sum(CostLine.gpu_us))
                .where(col(CostLine.month).in_(list(months)))
                .group_by(col(CostLine.month), col(CostLine.gpu_model))
            )
            if not include_owned:
                stmt = stmt.where(col(CostLine.owned).is_(False))
            for month, gpu, nano_usd, gpu_us in db.exec(stmt):
                gpu_hours = Decimal(gpu_us) / MICROS_PER_S / SECONDS_PER_HOUR
                _add_usage(out, month, gpu, _usd(nano_usd), gpu_hours)
        for view in self.sessions(open_only=True):
            if view.session.owned and not include_owned:
                continue
            for m in view.cost.months:
                if m.month in out:
                    _add_usage(out, m.month, view.session.gpu_model, m.total_usd,
                               m.gpu_s / SECONDS_PER_HOUR)
        return out

    def cumulative_rent(self, through_month: str) -> Decimal:
        """All rent (not owned hardware) recorded up to and including `through_month`."""
        with self.reading() as db:
            stmt = select(_cost_lines_usd()).where(col(CostLine.month) <= through_month).where(
                col(CostLine.owned).is_(False)
            )
            usd = _usd(db.exec(stmt).one())
        for view in self.sessions(open_only=True):
            if not view.session.owned:
                usd += sum((m.total_usd for m in view.cost.months if m.month <= through_month),
                           ZERO)
        return usd

    def job_costs(self) -> dict[str, Decimal]:
        """USD per job over all its sessions (owned ones too): closed sessions summed in SQL
        over their cost lines, open ones costed up to now."""
        out: dict[str, Decimal] = {}
        with self.reading() as db:
            stmt = (select(CostLine.job_id, _cost_lines_usd())
                    .where(col(CostLine.job_id).is_not(None))
                    .group_by(col(CostLine.job_id)))
            for job_id, nano_usd in db.exec(stmt):
                out[str(job_id)] = _usd(nano_usd)
        for view in self.sessions(open_only=True):
            if view.session.job_id:
                job_id = view.session.job_id
                out[job_id] = out.get(job_id, ZERO) + view.cost.total_usd
        return out

    def quote_errors(self) -> dict[str, float]:
        """Job id -> actual / quoted seconds - 1, for every job with both (train jobs, 0004)."""
        with self.reading() as db:
            stmt = select(Job).where(col(Job.quoted_s).is_not(None), col(Job.actual_s).is_not(None))
            return {j.id: e for j in db.exec(stmt) if (e := j.quote_error) is not None}

    def job_usd(self, job_id: str) -> Decimal:
        """A job's USD so far: all its sessions (owned ones too), running ones costed to now."""
        return sum((v.cost.total_usd for v in self.sessions(job_id=job_id)), ZERO)


def _add_usage(out: dict[str, tuple[Decimal, dict[str, Decimal]]], month: str, gpu: str,
               usd: Decimal, gpu_hours: Decimal) -> None:
    total, hours = out[month]
    hours[gpu] = hours.get(gpu, ZERO) + gpu_hours
    out[month] = (total + usd, hours)


def _only_month(cost: SessionCost, month: str) -> SessionCost:
    parts = tuple(m for m in cost.months if m.month == month)
    return SessionCost(
        duration_s=sum((m.duration_s for m in parts), ZERO),
        billed_s=int(sum((m.billed_s for m in parts), ZERO)),
        compute_usd=sum((m.compute_usd for m in parts), ZERO),
        storage_usd=sum((m.storage_usd for m in parts), ZERO),
        ipv4_usd=sum((m.ipv4_usd for m in parts), ZERO),
        running=cost.running,
        interruption_free=cost.interruption_free,
        months=parts,
    )
