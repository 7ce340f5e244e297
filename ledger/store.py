"""The ledger's transactions and the reads every part of the books shares.

`LedgerCore` holds the engine and the clock; `ledger.recording`, `ledger.queries` and
`ledger.job_records` add their methods to it, and `ledger.book.Ledger` puts them together.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from ledger.costs import CostInput, PriceAt, SessionCost, session_cost
from ledger.db import disk_full, write_error
from ledger.errors import NotFoundError
from ledger.models import PricePoint, RentalSession
from ledger.timeutil import utcnow

CHUNK = 500  # ids per IN (...) list: far below every database's limit on bound parameters


class LedgerCore:
    """The books on one database: transactions, and a session's price points and cost."""

    def __init__(self, engine: Engine, now: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.now = now
        self._write_engine = engine.execution_options(sqlite_immediate=True)

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
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(self.engine.url) from exc
            raise

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session to read in; a ledger that cannot be read raises LedgerError (which says
        it cannot be read, not that nothing was recorded)."""
        try:
            with Session(self.engine, expire_on_commit=False) as db:
                yield db
        except OperationalError as exc:
            raise write_error(exc, self.engine.url, "read") from exc

    def _prices(self, db: Session, session_id: int) -> list[PricePoint]:
        stmt = select(PricePoint).where(PricePoint.session_id == session_id)
        return list(db.exec(stmt.order_by(col(PricePoint.in_force_from))))

    def _prices_by_session(self, db: Session, ids: list[int]) -> dict[int, list[PricePoint]]:
        out: dict[int, list[PricePoint]] = {}
        for at in range(0, len(ids), CHUNK):
            stmt = select(PricePoint).where(col(PricePoint.session_id).in_(ids[at : at + CHUNK]))
            for p in db.exec(stmt.order_by(col(PricePoint.in_force_from))):
                out.setdefault(p.session_id or 0, []).append(p)
        return out

    def _cost(self, db: Session, row: RentalSession) -> SessionCost:
        return session_cost(cost_input(row, self._prices(db, row_id(row))), self.now())


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


def get_row(db: Session, session_id: int) -> RentalSession:
    """A stored session, or NotFoundError naming the command that lists them."""
    row = db.get(RentalSession, session_id)
    if row is None:
        raise NotFoundError(f"no session {session_id} in the ledger", "see `gpuhire ledger list`")
    return row


def row_id(row: RentalSession) -> int:
    assert row.id is not None
    return row.id
