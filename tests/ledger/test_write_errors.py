"""Writes that cannot happen say why (a lock held past the busy timeout), and a batch with
sessions already recorded is refused whole when asked (a file imported twice)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from ledger.book import Ledger, NewSession
from ledger.catalogue import DEFAULT_RULES
from ledger.db import open_engine
from ledger.errors import DuplicateSessionsError, LedgerError

T0 = datetime(2026, 10, 1, 8, tzinfo=UTC)
T1 = datetime(2026, 10, 1, 9, tzinfo=UTC)


def session(**changes: object) -> NewSession:
    fields: dict[str, object] = {"provider": "runpod", "gpu_model": "a100", "start_at": T0,
                                 "usd_per_hour": Decimal("1.19"), "end_at": T1,
                                 "instance_type": "", "zone": ""}
    fields.update(changes)
    return NewSession(**fields)  # type: ignore[arg-type]


def test_locked_ledger_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    book = Ledger(open_engine(f"sqlite:///{path}", busy_timeout_s=0.1))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(LedgerError) as info:
            book.record_session(session(), DEFAULT_RULES)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert str(info.value) == (
        f"the ledger at sqlite:///{path} stayed locked by another process past the busy "
        "timeout, so nothing was recorded; wait for the other gpuhire command to finish "
        "(or stop it), then run this again"
    )
    assert book.sessions() == []
    book.record_session(session(), DEFAULT_RULES)  # the lock gone, writing works again
    assert len(book.sessions()) == 1


def test_identical_sessions_are_refused_when_asked(ledger: Ledger) -> None:
    ledger.record_sessions([(session(), DEFAULT_RULES)])
    others = [
        session(start_at=datetime(2026, 10, 2, 8, tzinfo=UTC), end_at=None),
        session(usd_per_hour=Decimal("1.2")),
        session(zone="eu-1"),
        session(instance_type="pod-a"),
        session(end_at=datetime(2026, 10, 1, 10, tzinfo=UTC)),
        session(gpu_model="h100"),
    ]
    same = session(provider=" RunPod ", gpu_model="A100", usd_per_hour=Decimal("1.190"))
    batch = [(s, DEFAULT_RULES) for s in [*others, same]]
    with pytest.raises(DuplicateSessionsError) as info:
        ledger.record_sessions(batch, allow_duplicates=False)
    assert info.value.indexes == [len(others)]
    assert len(ledger.sessions()) == 1  # nothing of the batch was written
    ledger.record_sessions([(s, DEFAULT_RULES) for s in others], allow_duplicates=False)
    assert len(ledger.sessions()) == 1 + len(others)
    ledger.record_sessions([(same, DEFAULT_RULES)])  # allowed by default (the launcher's path)
    assert len(ledger.sessions()) == 2 + len(others)
