"""The ledger's tables (sqlmodel). Schema changes go through alembic (ledger/migrations).

Money is stored as whole nano-dollars (BIGINT) and read back as exact `Decimal`; times are
stored as naive UTC and read back as aware UTC. Both work the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Index, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from ledger.timeutil import as_utc, utcnow

NANO = Decimal(1_000_000_000)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


class NanoUSD(TypeDecorator[Decimal]):
    """Exact USD amounts stored as integer nano-dollars (1e-9 USD)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int((Decimal(value) * NANO).to_integral_value())

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) / NANO


class Job(SQLModel, table=True):
    """A train or infer job; the launcher fills its metrics as it runs."""

    __tablename__ = "jobs"

    id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=16)  # train | infer
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default="created", max_length=32, index=True)
    gpu_model: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    max_usd: Decimal | None = Field(default=None, sa_type=NanoUSD)
    lines_per_s: float | None = None  # training or inference throughput
    data_wait_fraction: float | None = None  # time blocked on the next batch / step time
    gpu_util: float | None = None  # mean GPU utilisation, 0..1
    best_cer: float | None = None  # best validation character error rate, 0..1
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Throughput is measured and looked up per model size, device and GPU, never pooled (0004).
    model_size: str | None = Field(default=None, max_length=64)  # preset name, or "1.2M params"
    device: str | None = Field(default=None, max_length=8)  # cpu | cuda
    # The quote before the job ran, and what it took once it ended (train jobs; 0004).
    quoted_s: float | None = None
    quoted_usd: Decimal | None = Field(default=None, sa_type=NanoUSD)
    actual_s: float | None = None
    actual_usd: Decimal | None = Field(default=None, sa_type=NanoUSD)

    @property
    def quote_error(self) -> float | None:
        """actual seconds / quoted seconds - 1 (+0.25: took a quarter longer than quoted)."""
        if not self.quoted_s or self.actual_s is None:
            return None
        return self.actual_s / self.quoted_s - 1


class RentalSession(SQLModel, table=True):
    """One machine rented (or run) from start to end; the unit of billing."""

    __tablename__ = "rental_sessions"
    __table_args__ = (Index("ix_sessions_start", "start_at"), Index("ix_sessions_end", "end_at"))

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32, index=True)
    region: str = Field(default="", max_length=32)
    zone: str = Field(default="", max_length=32)
    instance_type: str = Field(default="", max_length=64)
    instance_id: str | None = Field(default=None, max_length=64, index=True)
    gpu_model: str = Field(max_length=32)
    gpu_count: int = 1
    market: str = Field(default="on-demand", max_length=16)  # spot | on-demand
    state: str = Field(default="running", max_length=16)  # launching | running | ended
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_reason: str | None = Field(default=None, max_length=32)
    volume_gb: int = 0
    volume_type: str = Field(default="gp3", max_length=16)
    public_ipv4: bool = False
    job_id: str | None = Field(default=None, foreign_key="jobs.id", index=True)
    note: str = ""
    tags: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    # Billing rules in force when the session was recorded (see ledger/catalogue.py).
    min_billed_s: int = 0
    interruption_free_s: int = 0
    ebs_usd_per_gb_month: Decimal = Field(default=Decimal(0), sa_type=NanoUSD)
    ipv4_usd_per_hour: Decimal = Field(default=Decimal(0), sa_type=NanoUSD)
    on_demand_usd_per_hour: Decimal | None = Field(default=None, sa_type=NanoUSD)
    owned: bool = False  # the user's own hardware: costed at running cost, not rent
    gpu_util_mean: float | None = None  # mean GPU utilisation over the session, 0..1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PricePoint(SQLModel, table=True):
    """A price in force from a moment on: stored when a session starts and when it changes."""

    __tablename__ = "price_points"

    id: int | None = Field(default=None, primary_key=True)
    session_id: int | None = Field(default=None, foreign_key="rental_sessions.id", index=True)
    provider: str = Field(max_length=32)
    zone: str = Field(default="", max_length=32)
    instance_type: str = Field(default="", max_length=64)
    market: str = Field(default="on-demand", max_length=16)
    usd_per_hour: Decimal = Field(sa_type=NanoUSD)
    in_force_from: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CostLine(SQLModel, table=True):
    """A closed session's cost in one month, computed once by ledger.costs when it closes.

    Reports and the buy signal aggregate these in SQL; running sessions are costed live.
    """

    __tablename__ = "cost_lines"
    __table_args__ = (
        UniqueConstraint("session_id", "month"),
        Index(
            "ix_cost_lines_month", "month", "owned", "gpu_model", "compute_usd", "storage_usd",
            "ipv4_usd", "gpu_us",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="rental_sessions.id")
    month: str = Field(max_length=7)  # YYYY-MM
    provider: str = Field(max_length=32)
    gpu_model: str = Field(max_length=32)
    market: str = Field(max_length=16)
    owned: bool = False
    job_id: str | None = Field(default=None, max_length=64)
    compute_usd: Decimal = Field(sa_type=NanoUSD)
    storage_usd: Decimal = Field(sa_type=NanoUSD)
    ipv4_usd: Decimal = Field(sa_type=NanoUSD)
    duration_us: int = Field(sa_type=BigInteger)  # wall microseconds in this month
    billed_us: int = Field(sa_type=BigInteger)
    gpu_us: int = Field(sa_type=BigInteger)  # duration x gpu count


class AlertSend(SQLModel, table=True):
    """One alert for one rule, period and channel: sent at most once, retried until it is."""

    __tablename__ = "alert_sends"
    __table_args__ = (UniqueConstraint("rule", "period", "channel"),)

    id: int | None = Field(default=None, primary_key=True)
    rule: str = Field(max_length=128)
    period: str = Field(max_length=64)  # e.g. 2026-11, 2026-11:80, job id
    channel: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | failed
    subject: str = ""
    body: str = ""
    # The alert's structured fields (webhook JSON), as JSON values: Decimals as exact strings.
    # None on rows written before revision 0003.
    message_fields: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    attempts: int = 0
    last_error: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class LaunchAttempt(SQLModel, table=True):
    """Every try at renting a machine, successful or not."""

    __tablename__ = "launch_attempts"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str | None = Field(default=None, max_length=64, index=True)
    session_id: int | None = Field(default=None)
    provider: str = Field(max_length=32)
    region: str = Field(default="", max_length=32)
    zone: str = Field(default="", max_length=32)
    instance_type: str = Field(default="", max_length=64)
    market: str = Field(default="spot", max_length=16)
    outcome: str = Field(max_length=16)  # launched | capacity | error | skipped
    error_code: str = Field(default="", max_length=64)
    message: str = ""
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
