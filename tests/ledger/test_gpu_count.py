"""A box of four GPUs in the books: GPU-hours, the buy signal's owned hours and the idle-GPU
dollars count every GPU (an idle GPU among four is idle dollars), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from ledger.advice import advise_from_ledger
from ledger.book import Ledger, NewSession
from ledger.catalogue import BUILTIN_CARDS, BUILTIN_PROVIDERS
from ledger.idle import job_idle
from ledger.models import Job
from ledger.ownership import OwnershipParams, own_running_per_gpu_hour
from ledger.report import build_report

NOW = datetime(2026, 11, 15, tzinfo=UTC)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _four_gpus(ledger: Ledger) -> Ledger:
    book = Ledger(ledger.engine, now=lambda: NOW)
    # three GPUs busy, one idle: the box's mean utilisation is 0.75 (the trainer's gpu_util
    # under torchrun is the mean over every rank's GPU)
    book.create_job(Job(id="j4", kind="train", gpu_model="t4", gpu_util=0.75, spec={"gpus": 4}))
    aws = BUILTIN_PROVIDERS["aws"]
    book.record_sessions([
        # October: a g4dn.12xlarge on demand, 2 h at 3.912 USD/h, no disk or address
        (NewSession("aws", "t4", _t("2026-10-05T00:00"), D("3.912"), gpu_count=4,
                    instance_type="g4dn.12xlarge", end_at=_t("2026-10-05T02:00"), job_id="j4"), aws),
        # November: the same box running since 12:00 on the 14th (12 h to NOW)
        (NewSession("aws", "t4", _t("2026-11-14T12:00"), D("3.912"), gpu_count=4,
                    instance_type="g4dn.12xlarge", job_id="j4"), aws),
    ])
    return book


def test_gpu_hours_count_every_gpu(ledger: Ledger) -> None:
    book = _four_gpus(ledger)
    usage = book.month_usage(["2026-10", "2026-11"])
    assert usage["2026-10"] == (D("7.824"), {"t4": D(8)})  # 2 h x 4 GPUs
    assert usage["2026-11"][1] == {"t4": D(48)}  # running: 12 h x 4 GPUs, to now
    report = build_report(book, "2026-10")
    assert report.gpu_hours == D(8) and report.total_usd == D("7.824")
    assert [(p.key, p.gpu_hours) for p in report.by_gpu] == [("t4", D(8))]


def test_owned_hours_of_the_buy_signal_count_every_gpu(ledger: Ledger) -> None:
    book = _four_gpus(ledger)
    card = BUILTIN_CARDS["rtx3060"]
    params = OwnershipParams(window_months=1)
    advice = advise_from_ledger(book, card, params, _t("2026-11-01T00:00"))
    (october,) = advice.months
    assert october.gpu_hours == D(8)
    # the owned card does 8 T4-hours of work, not 2: its electricity for all of them
    assert october.own_running_usd == 8 * own_running_per_gpu_hour("t4", card, params)


def test_an_idle_gpu_among_four_is_idle_dollars(ledger: Ledger) -> None:
    book = _four_gpus(ledger)
    report = build_report(book, "2026-10")
    assert report.idle.idle_usd == D("7.824") * D("0.25")
    idle = job_idle(book, "j4")  # the job: both sessions, the running one to now
    total = sum((v.cost.total_usd for v in book.sessions(job_id="j4")), D(0))
    assert idle.idle_usd == total * D("0.25") and idle.sessions_known == 2
