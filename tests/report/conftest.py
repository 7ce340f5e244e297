"""A hand-computed ledger for the report tests (numbers worked out in tests/report/test_report.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ledger.book import Ledger, NewSession
from ledger.catalogue import BUILTIN_PROVIDERS, DEFAULT_RULES
from ledger.models import Job

NOW = datetime(2026, 11, 15, tzinfo=UTC)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def seed(ledger: Ledger, *, running: bool = True) -> None:
    """Sep: 4.00 rent. Oct: four rented sessions and one on owned hardware. Nov: one running."""
    aws, other, local = BUILTIN_PROVIDERS["aws"], DEFAULT_RULES, BUILTIN_PROVIDERS["local"]
    ledger.create_job(Job(id="j1", kind="train", gpu_util=0.75))
    items = [
        # 2026-09: 10 h x 0.40 = 4.00
        (NewSession("runpod", "t4", t("2026-09-10T00:00"), Decimal("0.40"),
                    end_at=t("2026-09-10T10:00")), other),
        # 10 h spot t4 at 0.20 = 2.00 compute; 100 GB EBS 10 h = 0.109589041; IPv4 0.05
        (NewSession("aws", "t4", t("2026-10-05T00:00"), Decimal("0.20"), market="spot",
                    instance_type="g4dn.xlarge", end_at=t("2026-10-05T10:00"), volume_gb=100,
                    public_ipv4=True, job_id="j1", on_demand_usd_per_hour=Decimal("0.526")), aws),
        # 2 h spot l4 at 0.30, interrupted after the free hour: 0.60; no on-demand price stored
        (NewSession("aws", "l4", t("2026-10-10T00:00"), Decimal("0.30"), market="spot",
                    end_at=t("2026-10-10T02:00"), end_reason="spot-interruption"), aws),
        # 4 h, two A10Gs, 1.20 per machine-hour: 4.80, 8 GPU-h
        (NewSession("runpod", "a10g", t("2026-10-20T00:00"), Decimal("1.20"), gpu_count=2,
                    end_at=t("2026-10-20T04:00")), other),
        # spans the month end: 2 h in October (2.00), 2 h in November (2.00)
        (NewSession("runpod", "t4", t("2026-10-31T22:00"), Decimal("1.00"),
                    end_at=t("2026-11-01T02:00")), other),
        # owned card, 5 h at 0.10 running cost: not rent
        (NewSession("local", "rtx3060", t("2026-10-12T00:00"), Decimal("0.10"),
                    end_at=t("2026-10-12T05:00")), local),
    ]
    if running:
        # November: running since the 14th at 0.50 -> 24 h to NOW = 12.00
        items.append((NewSession("runpod", "t4", t("2026-11-14T00:00"), Decimal("0.50")), other))
    ledger.record_sessions(items)


@pytest.fixture
def book(ledger: Ledger) -> Ledger:
    """The seeded ledger, its clock fixed at 2026-11-15 (both databases)."""
    fixed = Ledger(ledger.engine, now=lambda: NOW)
    seed(fixed)
    return fixed


@pytest.fixture
def cli_on(cli):
    """`cli_on(url, config_path)` -> a CLI runner on that database (and config file)."""
    return lambda url, config=None: type(cli)(url, config)


@pytest.fixture
def sqlite_book(sqlite_db: str) -> str:
    """URL of a seeded SQLite ledger (for tests that need one database only)."""
    from ledger.db import open_engine

    seed(Ledger(open_engine(sqlite_db), now=lambda: NOW))
    return sqlite_db
