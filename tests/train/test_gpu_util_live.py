"""A running job's GPU utilisation reaches the ledger as it runs, so the idle-GPU alert can judge
a machine that is still rented (not only once the job is over)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from launcher.train.follow import MAX_UTIL_SAMPLES, record_gpu_util
from ledger.alerts.config import IdleGpuRule
from ledger.alerts.rules import idle_gpu
from ledger.book import Ledger, NewSession
from ledger.catalogue import BUILTIN_PROVIDERS
from ledger.db import open_engine
from ledger.idle import job_idle
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


# --- USD on an idle GPU: rent x (1 - mean utilisation), per job (ledger/idle.py) -----------------

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SAMPLES = (0.75, 0.25, 0.5, 0.0)  # mean 0.375, exact in binary: the hand sums below stay exact


def _record(book: Ledger, job: str, start: datetime) -> None:
    """The samples as the follow loop stores them from `progress` events, 5 min apart."""
    for k, util in enumerate(SAMPLES):
        record_gpu_util(book, job, util, (start + timedelta(minutes=5 * (k + 1))).isoformat())


def test_idle_usd_of_a_job_from_its_recorded_samples(sqlite_db: str) -> None:
    book = Ledger(open_engine(sqlite_db))
    aws = BUILTIN_PROVIDERS["aws"]
    book.create_job(Job(id="job", kind="train", status="done", gpu_model="t4"))
    # attempt 0: one hour at 0.20 USD/h, judged by the job's samples (mean 0.375)
    book.record_session(NewSession(provider="aws", gpu_model="t4", start_at=T0, usd_per_hour=Decimal("0.20"),
                                   end_at=T0 + timedelta(hours=1), end_reason="completed", job_id="job",
                                   market="spot"), aws)
    # attempt 1: 30 min at 0.30 USD/h, closed with its own mean utilisation (0.75)
    later = T0 + timedelta(hours=2)
    second = book.record_session(NewSession(provider="aws", gpu_model="t4", start_at=later,
                                            usd_per_hour=Decimal("0.30"), job_id="job", market="spot"), aws)
    book.end_session(second, later + timedelta(minutes=30), "completed", gpu_util_mean=0.75)
    _record(book, "job", T0)

    got = job_idle(book, "job")

    # by hand: 0.20 x (1 - 0.375) + 0.15 x (1 - 0.75)
    assert got.idle_usd == Decimal("0.20") * (1 - Decimal("0.375")) + Decimal("0.15") * (1 - Decimal("0.75"))
    assert got.idle_usd == Decimal("0.1625")
    assert got.known_usd == Decimal("0.35") and got.util == 0.375
    assert (got.sessions_known, got.sessions_unknown) == (2, 0)


def test_a_job_of_unknown_utilisation_costs_no_idle_usd(sqlite_db: str) -> None:
    book = Ledger(open_engine(sqlite_db))
    book.create_job(Job(id="cpu", kind="train", status="done", gpu_model="t4"))  # NVML never answered
    book.record_session(NewSession(provider="aws", gpu_model="t4", start_at=T0, usd_per_hour=Decimal("0.20"),
                                   end_at=T0 + timedelta(hours=1), end_reason="completed", job_id="cpu",
                                   market="spot"), BUILTIN_PROVIDERS["aws"])
    got = job_idle(book, "cpu")
    assert (got.idle_usd, got.known_usd, got.util) == (0, 0, None)
    assert (got.sessions_known, got.sessions_unknown) == (0, 1)


def test_the_idle_alert_says_what_the_idle_gpu_cost(sqlite_db: str) -> None:
    now = T0 + timedelta(hours=1)
    book = Ledger(open_engine(sqlite_db), now=lambda: now)  # the running session costed to `now`
    book.create_job(Job(id="job", kind="train", status="running", gpu_model="t4"))
    book.record_session(NewSession(provider="aws", gpu_model="t4", start_at=T0, usd_per_hour=Decimal("0.20"),
                                   job_id="job", market="spot"), BUILTIN_PROVIDERS["aws"])
    _record(book, "job", now - timedelta(minutes=25))  # all four in the last 30 min, all below 80 %
    rule = IdleGpuRule(name="idle", type="idle_gpu", below_pct=Decimal(80), minutes=30)

    (alert,) = idle_gpu(book, rule, now)

    by_hand = Decimal("0.20") * (1 - Decimal("0.375"))  # one hour so far, mean 0.375
    assert alert.fields["idle_usd"] == by_hand == job_idle(book, "job").idle_usd
    assert "$0.13 of its $0.20 so far paid for an idle GPU" in alert.text  # 0.125 shown half up
