"""Writing the books: sessions, price points, ends, launch attempts.

Every write runs in one transaction that takes the write lock up front, so concurrent
recorders never lose a row. A closed session's cost is computed once by `ledger.costs` and
stored per month in `cost_lines`, so the sums in `ledger.queries` are plain SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from ledger.catalogue import BillingRules
from ledger.costs import END_REASONS, MARKETS, MICROS_PER_S, SessionCost
from ledger.errors import DuplicateSessionsError, InputError
from ledger.models import NANO, CostLine, LaunchAttempt, PricePoint, RentalSession
from ledger.store import CHUNK, LedgerCore, get_row, row_id
from ledger.timeutil import as_utc

SPOT_INTERRUPTION = "spot-interruption"  # only EC2 interrupts, and only spot machines

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
        check_price(self.usd_per_hour, "price")
        if self.on_demand_usd_per_hour is not None:
            check_price(self.on_demand_usd_per_hour, "on-demand price")
        if self.market not in MARKETS:
            raise InputError(f"market {self.market!r} is unknown", "use spot or on-demand")
        if self.volume_gb < 0:
            raise InputError(f"volume {self.volume_gb} GB is negative", "give a size >= 0")
        if self.volume_gb > MAX_VOLUME_GB:
            raise InputError(f"volume {self.volume_gb} GB is above {MAX_VOLUME_GB} GB",
                             "give the attached disk in GB")
        self._check_end()

    def _check_end(self) -> None:
        if self.end_reason is not None and self.end_reason not in END_REASONS:
            raise InputError(
                f"end reason {self.end_reason!r} is unknown", f"use one of {', '.join(END_REASONS)}"
            )
        if self.end_at is not None and as_utc(self.end_at) < as_utc(self.start_at):
            raise InputError("the session ends before it starts", "check --start and --end")
        if self.end_at is None and self.end_reason is not None:
            raise InputError("an end reason was given without an end", "add --end")
        if self.end_reason == SPOT_INTERRUPTION and self.market != "spot":
            raise InputError(
                f"end reason {SPOT_INTERRUPTION} is for spot sessions, and this one is "
                f"{self.market}", "record it as spot, or give another end reason "
                "(completed, user or unknown)")


def check_price(usd_per_hour: Decimal, what: str) -> None:
    """A price the ledger can store: >= 0 and below the cap (a computed rate, such as watts
    times an electricity price, is rounded to the nano-dollar when stored)."""
    if usd_per_hour < 0:
        raise InputError(f"{what} {usd_per_hour} USD/h is negative", "give a price >= 0")
    if usd_per_hour > MAX_USD_PER_HOUR:
        raise InputError(f"{what} {usd_per_hour} USD/h is above {MAX_USD_PER_HOUR} USD/h",
                         "give the whole machine's price per hour in USD")


class Recording(LedgerCore):
    """The writes of `ledger.book.Ledger`."""

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
                ids.append(row_id(row))
        return ids

    def _duplicates(self, db: Session, news: Sequence[NewSession]) -> list[int]:
        """Positions in `news` of sessions identical to ones already recorded."""
        starts = sorted({as_utc(n.start_at) for n in news})
        stored: set[tuple[object, ...]] = set()
        for at in range(0, len(starts), CHUNK):
            stmt = select(RentalSession).where(
                col(RentalSession.start_at).in_(starts[at : at + CHUNK]))
            rows = list(db.exec(stmt))
            prices = self._prices_by_session(db, [row_id(r) for r in rows])
            for r in rows:
                points = prices.get(row_id(r), [])
                price = points[0].usd_per_hour if points else Decimal(0)
                stored.add((r.provider, r.gpu_model, r.start_at, r.end_at, price,
                            r.instance_type, r.zone))
        return [i for i, n in enumerate(news) if _identity(n) in stored]

    def record_session(self, new: NewSession, rules: BillingRules) -> int:
        """Record one session (before a launch: state `launching`, no instance yet)."""
        return self.record_sessions([(new, rules)])[0]

    def _insert(self, db: Session, new: NewSession, rules: BillingRules) -> RentalSession:
        row = _session_row(new, rules)
        db.add(row)
        db.flush()
        db.add(_price_point(row, new.usd_per_hour, row.start_at))
        db.flush()
        if row.end_at is not None:
            self._write_cost_lines(db, row)
        return row

    def set_instance(self, session_id: int, instance_id: str, state: str = "running") -> None:
        """Attach the cloud's instance id as soon as it exists."""
        with self.writing() as db:
            row = get_row(db, session_id)
            row.instance_id = instance_id
            row.state = state
            db.add(row)

    def record_price(self, session_id: int, usd_per_hour: Decimal, at: datetime) -> None:
        """Store a new price in force for a running session."""
        with self.writing() as db:
            db.add(_price_point(get_row(db, session_id), usd_per_hour, as_utc(at)))

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
            row = get_row(db, session_id)
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
            row = get_row(db, session_id)
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
                    session_id=row_id(row), month=m.month, provider=row.provider,
                    gpu_model=row.gpu_model, market=row.market, owned=row.owned,
                    job_id=row.job_id, compute_usd=m.compute_usd, storage_usd=m.storage_usd,
                    ipv4_usd=m.ipv4_usd, duration_us=int(m.duration_s * MICROS_PER_S),
                    billed_us=int(m.billed_s * MICROS_PER_S), gpu_us=int(m.gpu_s * MICROS_PER_S),
                )
            )


def _session_row(new: NewSession, rules: BillingRules) -> RentalSession:
    """The stored form of a new session: names normalised, times UTC, billing rules copied."""
    ended = new.end_at is not None
    return RentalSession(
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


def _price_point(row: RentalSession, usd_per_hour: Decimal, at: datetime) -> PricePoint:
    """The price in force for a stored session from `at` on."""
    return PricePoint(session_id=row.id, provider=row.provider, zone=row.zone,
                      instance_type=row.instance_type, market=row.market,
                      usd_per_hour=usd_per_hour, in_force_from=at)


def _identity(new: NewSession) -> tuple[object, ...]:
    """What makes a new session the same as a recorded one, normalised as stored."""
    nano_price = (new.usd_per_hour * NANO).to_integral_value() / NANO
    return (new.provider.strip().lower(), new.gpu_model.strip().lower(), as_utc(new.start_at),
            as_utc(new.end_at) if new.end_at else None, nano_price, new.instance_type, new.zone)
