"""The books: `Ledger` is the one way in to sessions, price points, jobs and their costs.

It is put together from one class per topic, all on the transactions of `ledger.store`:

    ledger.recording    NewSession; recording sessions, prices, ends and launch attempts
    ledger.queries      SessionView; sessions with their cost, month usage, rent, job costs
    ledger.job_records  creating, updating and reading jobs

Every write runs in one transaction that takes the write lock up front, so concurrent
recorders never lose a row. A closed session's cost is computed once by `ledger.costs` and
stored per month in `cost_lines`; aggregations are then plain SQL sums, and running sessions
are costed live.
"""

from __future__ import annotations

from ledger.job_records import JobRecords
from ledger.queries import Queries, SessionView
from ledger.recording import MAX_USD_PER_HOUR, NewSession, Recording
from ledger.store import cost_input

__all__ = ["MAX_USD_PER_HOUR", "Ledger", "NewSession", "SessionView", "cost_input"]


class Ledger(Recording, Queries, JobRecords):
    """The books on one database."""
