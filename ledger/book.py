"""Recording and reading the books: sessions, price points, jobs, and their costs.

`Ledger` is the one way in. Every write runs in one transaction that takes the write lock up
front, so concurrent recorders never lose a row. A closed session's cost is computed once by
`ledger.costs` and stored per month in `cost_lines`; aggregations are then plain SQL sums, and
running sessions are costed live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from ledger.catalogue import BillingRules
from ledger.costs import END_REASONS, MARKETS, CostInput, PriceAt, SessionCost, session_cost
from ledger.db import write_error
from ledger.errors import DuplicateSessionsError, InputError, NotFoundError
from ledger.models import NANO, CostLine, Job, LaunchAttempt, PricePoint, RentalSession
from ledger.timeutil import as_utc, month_end, month_start, utcnow

_US = Decimal(1_000_000)
# Caps far past any real rental; they keep every stored amount within a 64-bit nano-dollar.
MAX_USD_PER_HOUR = Decimal(100_000)
MAX_GPU_COUNT = 100_000
MAX_VOLUME_GB = 1_000_000


@dataclass(frozen=True)
class NewSession:
    """A rental session to record. Times are aware (converted to UTC); money is Decimal."""

    provider: str
    gpu_model: str
    start_at: datetime
    usd_per_hour: Decimal  # the price in force at start
    gpu_count: int = 1
    region: str = ""
    zone: str = ""
    instance_type: str = ""
    instance_id: str | None = None
    market: str = "on-demand"
    state: str = "running"  # launching | running (ended when end_at is given)
    end_at: datetime | None = None
    end_reason: str | None = None
    volume_gb: int = 0
    volume_type: str = "gp3"
    public_ipv4: bool = False
    job_id: str | None = None
    note: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    on_demand_usd_per_hour: Decimal | None = None

    def check(self) -> None:
        """Raise InputError naming the fix for values no session can have."""
        if not self.provider.strip():
            raise InputError("provider is empty", "give the provider, e.g. aws or runpod")
        if not self.gpu_model.strip():
            raise InputError("GPU model is empty", "give the GPU, e.g. t4, l4 or a100")
        if self.gpu_count < 1:
            raise InputError(f"GPU count {self.gpu_count} is below 1", "use --count 1 or more")
        if self.gpu_count > MAX_GPU_COUNT:
            raise InputError(f"GPU count {self.gpu_count} is above {MAX_GPU_COUNT}",
                             "give the GPUs of one machine (or record one session per machine)")
        _check_price(self.usd_per_hour, "price")
        if self.on_demand_usd_per_hour is not None:
            _check_price(self.on_demand_usd_per_hour, "on-demand price")
        if self.market not in MARKETS:
            raise InputError(f"market {self.market!r} is unknown", "use spot or on-demand")
        if self.volume_gb < 0:
            raise InputError(f"volume {self.volume_gb} GB is negative", "give a size >= 0")
        if self.volume_gb > MAX_VOLUME_GB:
            raise InputError(f"volume {self.volume_gb} GB is above {MAX_VOLUME_GB} GB",
                             "give the attached disk in GB")
        if self.end_reason is not None and self.end_reason not in END_REASONS:
            raise InputError(
                f"end reason {self.end_reason!r} is unknown", f"use one of {', '.join(END_REASONS)}"
            )
        if self.end_at is not None and as_utc(self.end_at) < as_utc(self.start_at):
            raise InputError("the session ends before it starts", "check --start and --end")
        if self.end_at is None and self.end_reason is not None:
            raise InputError("an end reason was given without an end", "add --end")


def _check_price(usd_per_hour: Decimal, what: str) -> None:
    """A price the ledger can store: >= 0 and below the cap (a computed rate, such as watts
    times an electricity price, is rounded to the nano-dollar when stored)."""
    if usd_per_hour < 0:
        raise InputError(f"{what} {usd_per_hour} USD/h is negative", "give a price >= 0")
    if usd_per_hour > MAX_USD_PER_HOUR:
        raise InputError(f"{what} {usd_per_hour} USD/h is above {MAX_USD_PER_HOUR} USD/h",
                         "give the whole machine's price per hour in USD")


@dataclass(frozen=True)
class SessionView:
    """A session with its cost (whole, or the part in one month)."""

    session: RentalSession
    cost: SessionCost
    usd_per_hour: Decimal  # the latest price in force

    @property
    def running(self) -> bool:
        return self.cost.running


class Ledger:
    """The books on one database."""

    def __init__(self, engine: Engine, now: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.now = now
        self._write_engine = engine.execution_options(sqlite_immediate=True)

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock from its start; commits on exit.

        A database that cannot be written (read-only, locked past the busy timeout, a file
        that cannot be opened) raises LedgerError naming the fix; nothing is committed."""
        try:
            with Session(self._write_engine, expire_on_commit=False) as db:
                yield db
                db.commit()
        except OperationalError as exc:
            raise write_error(exc, self.engine.url) from exc

    @contextmanager
    def reading(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as db:
                yield db
        except OperationalError as exc:
            raise write_error(exc, self.engine.url) from exc

    # -- sessions -------------------------------------------------------------------------
    def record_sessions(
        self, items: Sequence[tuple[NewSession, BillingRules]], *, allow_duplicates: bool = True
    ) -> list[int]:
        """Record sessions in one transaction: all are written, or none.

        With `allow_duplicates=False`, sessions identical to recorded ones (same provider,
        GPU, start, end, price, instance type and zone) raise DuplicateSessionsError and
        nothing is written: importing one file twice would count its rent twice."""
        for new, _ in items:
            new.check()
        ids: list[int] = []
        with self.writing() as db:  # checked under the write lock: two imports cannot race
            if not allow_duplicates:
                found = self._duplicates(db, [new for new, _ in items])
                if found:
                    raise DuplicateSessionsError(found)
            for new, rules in items:
                row = self._insert(db, new, rules)
                ids.append(_id(row))
        return ids

    def _duplicates(self, db: Session, news: Sequence[NewSession]) -> list[int]:
        """Positions in `news` of sessions identical to ones already recorded."""
        starts = sorted({as_utc(n.start_at) for n in news})
        stored: set[tuple[object, ...]] = set()
        for at in range(0, len(starts), 500):
            stmt = select(RentalSession).where(col(RentalSession.start_at).in_(starts[at : at + 500]))
            rows = list(db.exec(stmt))
            prices = self._prices_by_session(db, [_id(r) for r in rows])
            for r in rows:
                points = prices.get(_id(r), [])
                price = points[0].usd_per_hour if points else Decimal(0)
                stored.add((r.provider, r.gpu_model, r.start_at, r.end_at, price,
                            r.instance_type, r.zone))
        return [i for i, n in enumerate(news) if _identity(n) in stored]

    def record_session(self, new: NewSession, rules: BillingRules) -> int:
        """Record one session (before a launch: state `launching`, no instance yet)."""
        return self.record_sessions([(new, rules)])[0]

    def _insert(self, db: Session, new: NewSession, rules: BillingRules) -> RentalSession:
        ended = new.end_at is not None
        row = RentalSession(
            provider=new.provider.strip().lower(),
            region=new.region,
            zone=new.zone,
            instance_type=new.instance_type,
            instance_id=new.instance_id,
            gpu_model=new.gpu_model.strip().lower(),
            gpu_count=new.gpu_count,
            market=new.market,
            state="ended" if ended else new.state,
            start_at=as_utc(new.start_at),
            end_at=as_utc(new.end_at) if new.end_at else None,
            end_reason=(new.end_reason or "completed") if ended else None,
            volume_gb=new.volume_gb,
            volume_type=new.volume_type,
            public_ipv4=new.public_ipv4,
            job_id=new.job_id,
            note=new.note,
            tags=dict(new.tags),
            min_billed_s=rules.min_billed_s,
            interruption_free_s=rules.interruption_free_s,
            ebs_usd_per_gb_month=rules.ebs_usd_per_gb_month,
            ipv4_usd_per_hour=rules.ipv4_usd_per_hour,
            on_demand_usd_per_hour=new.on_demand_usd_per_hour,
            owned=rules.owned,
        )
        db.add(row)
        db.flush()
        db.add(
            PricePoint(
                session_id=row.id,
                provider=row.provider,
                zone=row.zone,
                instance_type=row.instance_type,
                market=row.market,
                usd_per_hour=new.usd_per_hour,
                in_force_from=row.start_at,
            )
        )
        db.flush()
        if ended:
            self._write_cost_lines(db, row)
        return row

    def set_instance(self, session_id: int, instance_id: str, state: str = "running") -> None:
        """Attach the cloud's instance id as soon as it exists."""
        with self.writing() as db:
            row = _get(db, session_id)
            row.instance_id = instance_id
            row.state = state
            db.add(row)

    def record_price(self, session_id: int, usd_per_hour: Decimal, at: datetime) -> None:
        """Store a new price in force for a running session."""
        with self.writing() as db:
            row = _get(db, session_id)
            db.add(
                PricePoint(
                    session_id=row.id, provider=row.provider, zone=row.zone,
                    instance_type=row.instance_type, market=row.market,
                    usd_per_hour=usd_per_hour, in_force_from=as_utc(at),
                )
            )

    def end_session(
        self,
        session_id: int,
        end_at: datetime,
        reason: str,
        gpu_util_mean: float | None = None,
    ) -> SessionCost:
        """Close a session and store its cost; closing twice keeps the first end."""
        if reason not in END_REASONS:
            raise InputError(f"end reason {reason!r} is unknown", f"use one of {END_REASONS}")
        with self.writing() as db:
            row = _get(db, session_id)
            if row.end_at is None:
                row.end_at = max(as_utc(end_at), row.start_at)
                row.end_reason = reason
                row.state = "ended"
                if gpu_util_mean is not None:
                    row.gpu_util_mean = gpu_util_mean
                db.add(row)
                db.flush()
                self._write_cost_lines(db, row)
            return self._cost(db, row)

    def record_attempt(self, attempt: LaunchAttempt) -> None:
        """Store one try at renting a machine (launched, capacity or error)."""
        with self.writing() as db:
            db.add(attempt)

    def attempts(self, job_id: str | None = None) -> list[LaunchAttempt]:
        """Launch attempts, oldest first (all, or one job's)."""
        with self.reading() as db:
            stmt = select(LaunchAttempt).order_by(col(LaunchAttempt.at), col(LaunchAttempt.id))
            if job_id is not None:
                stmt = stmt.where(LaunchAttempt.job_id == job_id)
            return list(db.exec(stmt))

    def discard_launch(self, session_id: int) -> None:
        """Delete a session written before a launch that never got a machine (no instance id).

        Nothing was rented, so nothing may be billed: closing it would charge the minimum.
        """
        with self.writing() as db:
            row = _get(db, session_id)
            if row.instance_id is not None or row.end_at is not None:
                raise InputError(
                    f"session {session_id} has a machine or has ended", "close it with end_session"
                )
            for point in db.exec(select(PricePoint).where(PricePoint.session_id == session_id)):
                db.delete(point)
            db.delete(row)

    def _write_cost_lines(self, db: Session, row: RentalSession) -> None:
        cost = self._cost(db, row)
        for m in cost.months:
            db.add(
                CostLine(
                    session_id=_id(row), month=m.month, provider=row.provider,
                    gpu_model=row.gpu_model, market=row.market, owned=row.owned,
                    job_id=row.job_id, compute_usd=m.compute_usd, storage_usd=m.storage_usd,
                    ipv4_usd=m.ipv4_usd, duration_us=int(m.duration_s * _US),
                    billed_us=int(m.billed_s * _US), gpu_us=int(m.gpu_s * _US),
                )
            )

    def _prices(self, db: Session, session_id: int) -> list[PricePoint]:
        stmt = select(PricePoint).where(PricePoint.session_id == session_id)
        return list(db.exec(stmt.order_by(col(PricePoint.in_force_from))))

    def _cost(self, db: Session, row: RentalSession) -> SessionCost:
        return session_cost(cost_input(row, self._prices(db, _id(row))), self.now())

    def get_session(self, session_id: int) -> RentalSession:
        with self.reading() as db:
            return _get(db, session_id)

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
            prices = self._prices_by_session(db, [_id(r) for r in rows])
        views = []
        for row in rows:
            points = prices.get(_id(row), [])
            cost = session_cost(cost_input(row, points), self.now())
            if month is not None:
                cost = _only_month(cost, month)
            latest = points[-1].usd_per_hour if points else Decimal(0)
            views.append(SessionView(row, cost, latest))
        return views

    def _prices_by_session(self, db: Session, ids: list[int]) -> dict[int, list[PricePoint]]:
        out: dict[int, list[PricePoint]] = {}
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            stmt = select(PricePoint).where(col(PricePoint.session_id).in_(chunk))
            for p in db.exec(stmt.order_by(col(PricePoint.in_force_from))):
                out.setdefault(p.session_id or 0, []).append(p)
        return out

    # -- aggregation ----------------------------------------------------------------------
    def month_usage(
        self, months: Sequence[str], *, include_owned: bool = False
    ) -> dict[str, tuple[Decimal, dict[str, Decimal]]]:
        """Per month: USD and GPU-hours by GPU model, summed in SQL over closed sessions,
        plus the running sessions costed now. Owned hardware is left out unless asked."""
        out: dict[str, tuple[Decimal, dict[str, Decimal]]] = {
            m: (Decimal(0), {}) for m in months
        }
        total = (
            func.sum(CostLine.compute_usd) + func.sum(CostLine.storage_usd)
            + func.sum(CostLine.ipv4_usd)
        )
        with self.reading() as db:
            stmt = (
                select(CostLine.month, CostLine.gpu_model, total, func.sum(CostLine.gpu_us))
                .where(col(CostLine.month).in_(list(months)))
                .group_by(col(CostLine.month), col(CostLine.gpu_model))
            )
            if not include_owned:
                stmt = stmt.where(col(CostLine.owned).is_(False))
            for month, gpu, nano_usd, gpu_us in db.exec(stmt):
                usd, hours = out[month]
                hours[gpu] = hours.get(gpu, Decimal(0)) + Decimal(gpu_us) / _US / 3600
                out[month] = (usd + Decimal(nano_usd) / NANO, hours)
        for view in self.sessions(open_only=True):
            if view.session.owned and not include_owned:
                continue
            for m in view.cost.months:
                if m.month in out:
                    usd, hours = out[m.month]
                    gpu = view.session.gpu_model
                    hours[gpu] = hours.get(gpu, Decimal(0)) + m.gpu_s / 3600
                    out[m.month] = (usd + m.total_usd, hours)
        return out

    def cumulative_rent(self, through_month: str) -> Decimal:
        """All rent (not owned hardware) recorded up to and including `through_month`."""
        total = (
            func.coalesce(func.sum(CostLine.compute_usd), 0)
            + func.coalesce(func.sum(CostLine.storage_usd), 0)
            + func.coalesce(func.sum(CostLine.ipv4_usd), 0)
        )
        with self.reading() as db:
            stmt = select(total).where(col(CostLine.month) <= through_month).where(
                col(CostLine.owned).is_(False)
            )
            nano = db.exec(stmt).one()
        usd = Decimal(nano or 0) / NANO
        for view in self.sessions(open_only=True):
            if not view.session.owned:
                usd += sum((m.total_usd for m in view.cost.months if m.month <= through_month),
                           Decimal(0))
        return usd

    def job_costs(self) -> dict[str, Decimal]:
        """USD per job over all its sessions (owned ones too): closed sessions summed in SQL
        over their cost lines, open ones costed up to now."""
        total = (
            func.sum(CostLine.compute_usd) + func.sum(CostLine.storage_usd)
            + func.sum(CostLine.ipv4_usd)
        )
        out: dict[str, Decimal] = {}
        with self.reading() as db:
            stmt = (select(CostLine.job_id, total).where(col(CostLine.job_id).is_not(None))
                    .group_by(col(CostLine.job_id)))
            for job_id, nano_usd in db.exec(stmt):
                out[str(job_id)] = Decimal(nano_usd) / NANO
        for view in self.sessions(open_only=True):
            if view.session.job_id:
                job_id = view.session.job_id
                out[job_id] = out.get(job_id, Decimal(0)) + view.cost.total_usd
        return out

    # -- jobs -----------------------------------------------------------------------------
    def create_job(self, job: Job) -> Job:
        with self.writing() as db:
            db.add(job)
        return job

    def get_job(self, job_id: str) -> Job:
        with self.reading() as db:
            job = db.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r} in the ledger", "see `gpuhire status`")
        return job

    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Set fields of a job (status, metrics, ...); unknown field names are an error."""
        with self.writing() as db:
            job = db.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id!r} in the ledger", "see `gpuhire status`")
            for key, value in changes.items():
                if not hasattr(job, key):
                    raise AttributeError(key)
                setattr(job, key, value)
            db.add(job)
        return job

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self.reading() as db:
            stmt = select(Job).order_by(col(Job.created_at))
            if kind:
                stmt = stmt.where(Job.kind == kind)
            return list(db.exec(stmt))

    def measured_lines_per_s(self, kind: str, gpu_model: str) -> float | None:
        """Median throughput of finished jobs of this kind on this GPU, or None."""
        with self.reading() as db:
            stmt = (
                select(Job.lines_per_s)
                .where(Job.kind == kind, Job.gpu_model == gpu_model.lower())
                .where(col(Job.lines_per_s).is_not(None))
            )
            values = sorted(v for v in db.exec(stmt) if v)
        if not values:
            return None
        return values[len(values) // 2]


def cost_input(row: RentalSession, points: Sequence[PricePoint]) -> CostInput:
    """What ledger.costs needs, read from a stored session and its price points."""
    return CostInput(
        start_at=row.start_at,
        end_at=row.end_at,
        prices=tuple(PriceAt(p.in_force_from, p.usd_per_hour) for p in points)
        or (PriceAt(row.start_at, Decimal(0)),),
        market=row.market,
        end_reason=row.end_reason,
        min_billed_s=row.min_billed_s,
        interruption_free_s=row.interruption_free_s,
        volume_gb=row.volume_gb,
        ebs_usd_per_gb_month=row.ebs_usd_per_gb_month,
        public_ipv4=row.public_ipv4,
        ipv4_usd_per_hour=row.ipv4_usd_per_hour,
        gpu_count=row.gpu_count,
    )


def _identity(new: NewSession) -> tuple[object, ...]:
    """What makes a new session the same as a recorded one, normalised as stored."""
    nano_price = (new.usd_per_hour * NANO).to_integral_value() / NANO
    return (new.provider.strip().lower(), new.gpu_model.strip().lower(), as_utc(new.start_at),
            as_utc(new.end_at) if new.end_at else None, nano_price, new.instance_type, new.zone)


def _only_month(cost: SessionCost, month: str) -> SessionCost:
    parts = tuple(m for m in cost.months if m.month == month)
    zero = Decimal(0)
    return SessionCost(
        duration_s=sum((m.duration_s for m in parts), zero),
        billed_s=int(sum((m.billed_s for m in parts), zero)),
        compute_usd=sum((m.compute_usd for m in parts), zero),
        storage_usd=sum((m.storage_usd for m in parts), zero),
        ipv4_usd=sum((m.ipv4_usd for m in parts), zero),
        running=cost.running,
        interruption_free=cost.interruption_free,
        months=parts,
    )


def _get(db: Session, session_id: int) -> RentalSession:
    row = db.get(RentalSession, session_id)
    if row is None:
        raise NotFoundError(f"no session {session_id} in the ledger", "see `gpuhire ledger list`")
    return row


def _id(row: RentalSession) -> int:
    assert row.id is not None
    return row.id
