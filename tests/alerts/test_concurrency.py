"""Two checks at the same moment send an alert once: the row is claimed before sending."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal as D

from launcher.config import Settings
from ledger.alerts import run_checks
from ledger.alerts.check import CheckResult, history
from ledger.book import Ledger, NewSession
from ledger.catalogue import DEFAULT_RULES
from ledger.db import open_engine

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def test_two_checks_at_once_send_once(db_url: str, start_webhook) -> None:
    server, hooks = start_webhook(0, delay_s=0.3)
    try:
        settings = Settings.model_validate({"alerts": {
            "rules": [{"name": "left", "type": "long_running", "hours": 1,
                       "channels": ["hook"]}],
            "channels": {"hook": {"type": "webhook",
                                  "url": f"http://127.0.0.1:{server.server_address[1]}/"}},
        }})
        first = Ledger(open_engine(db_url), now=lambda: NOW)
        first.record_session(NewSession("runpod", "t4", datetime(2026, 11, 15, tzinfo=UTC),
                                        D("1")), DEFAULT_RULES)
        books = [first, Ledger(open_engine(db_url), now=lambda: NOW)]
        barrier = threading.Barrier(2)
        results: list[CheckResult] = []

        def check(book: Ledger) -> None:
            barrier.wait()
            results.append(run_checks(book, settings))

        threads = [threading.Thread(target=check, args=(b,)) for b in books]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        statuses = sorted(d.status for r in results for d in r.deliveries)
        assert statuses in (["busy", "sent"], ["already-sent", "sent"]), statuses
        assert len(hooks.bodies) == 1
        [row] = history(first)
        assert (row.status, row.attempts) == ("sent", 1)
    finally:
        server.shutdown()
        server.server_close()


def test_a_check_that_died_mid_send_is_taken_over(ledger: Ledger) -> None:
    import io
    from datetime import timedelta

    from ledger.models import AlertSend

    book = Ledger(ledger.engine, now=lambda: NOW)
    settings = Settings.model_validate({"alerts": {"rules": [
        {"name": "left", "type": "long_running", "hours": 1}]}})
    book.record_session(NewSession("runpod", "t4", datetime(2026, 11, 15, tzinfo=UTC), D("1")),
                        DEFAULT_RULES)
    with book.writing() as db:  # a check claimed it a minute ago and is still sending
        db.add(AlertSend(rule="left", period="session:1", channel="console", status="sending",
                         subject="s", body="b", attempts=0, sent_at=NOW - timedelta(minutes=1),
                         created_at=NOW))
    out = io.StringIO()
    assert [d.status for d in run_checks(book, settings, out=out).deliveries] == ["busy"]
    assert out.getvalue() == ""
    later = Ledger(ledger.engine, now=lambda: NOW + timedelta(minutes=15))  # it died
    assert [d.status for d in run_checks(later, settings, out=out).deliveries] == ["sent"]
    assert out.getvalue().count("ALERT") == 1
