"""A running job's GPU utilisation reaches the ledger as it runs, so the idle-GPU alert can judge
a machine that is still rented (not only once the job is over)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from launcher.train.follow import MAX_UTIL_SAMPLES, record_gpu_util
from ledger.alerts.config import IdleGpuRule
from ledger.alerts.rules import idle_gpu
from ledger.book import Ledger, NewSession
from ledger.catalogue import BUILTIN_PROVIDERS
from ledger.db import open_engine
from ledger.models import Job
from ledger.timeutil import utcnow


def test_samples_as_they_come_make_the_idle_rule_fire(sqlite_db: str) -> None:
    book = Ledger(open_engine(sqlite_db))
    now = utcnow()
    book.create_job(Job(id="job", kind="train", status="running", gpu_model="t4"))
    book.record_session(NewSession(provider="aws", gpu_model="t4", start_at=now - timedelta(hours=1),
                                   usd_per_hour=Decimal("0.20"), job_id="job", market="spot"),
                        BUILTIN_PROVIDERS["aws"])
    rule = IdleGpuRule(name="idle", type="idle_gpu", below_pct=Decimal(20), minutes=30)
    for minutes_ago in range(40, 0, -5):  # busy 40 and 35 min ago, starved for the last 30
        util = 0.9 if minutes_ago > 30 else 0.05
        record_gpu_util(book, "job", util, (now - timedelta(minutes=minutes_ago)).isoformat())
    job = book.get_job("job")
    assert len(job.metrics["gpu_util_samples"]) == 8 and job.gpu_util is not None
    assert idle_gpu(book, rule, now - timedelta(minutes=21)) == []  # a busy sample in the window
    (alert,) = idle_gpu(book, rule, now)
    assert "below 20" in alert.text and "30 min" in alert.text


def test_samples_are_capped(sqlite_db: str) -> None:
    book = Ledger(open_engine(sqlite_db))
    book.create_job(Job(id="job", kind="train", status="running", gpu_model="t4"))
    for k in range(MAX_UTIL_SAMPLES + 5):
        record_gpu_util(book, "job", (k % 10) / 10)
    assert len(book.get_job("job").metrics["gpu_util_samples"]) == MAX_UTIL_SAMPLES
