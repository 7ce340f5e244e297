"""The ledger on real SQLite and real PostgreSQL: migrations, round trips, concurrent writers."""

from __future__ import annotations

import multiprocessing
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from ledger.book import Ledger, NewSession
from ledger.catalogue import BUILTIN_PROVIDERS, DEFAULT_RULES
from ledger.db import HEAD, current_revision, open_engine, upgrade
from ledger.errors import InputError, LedgerError
from ledger.models import Job

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
AWS = BUILTIN_PROVIDERS["aws"]


def spot(start: datetime = T0, hours: float | None = 2, **kw) -> NewSession:
    return NewSession(
        provider="aws", gpu_model="t4", start_at=start, usd_per_hour=D("0.2"),
        end_at=start + timedelta(hours=hours) if hours is not None else None,
        market="spot", instance_type="g4dn.xlarge", zone="us-east-1a", volume_gb=100, **kw,
    )


def test_head_is_the_newest_migration() -> None:
    versions = Path(__file__).parents[2] / "ledger" / "migrations" / "versions"
    revisions = sorted(re.match(r"(\d{4})_", p.name).group(1) for p in versions.glob("0*.py"))
    assert revisions[-1] == HEAD


def test_new_database_is_created_at_head(db_url: str) -> None:
    engine = open_engine(db_url)
    assert current_revision(engine) == HEAD
    tables = set(inspect(engine).get_table_names())
    assert {"rental_sessions", "price_points", "jobs", "cost_lines", "alert_sends"} <= tables


def _row_at_revision(db_url: str, revision: str, insert_sql: str) -> None:
    """A ledger left at `revision` by an older gpuhire, holding one row (`:t` is T0)."""
    old = open_engine(db_url, migrate=False)
    upgrade(old, revision)
    assert current_revision(old) == revision
    with old.begin() as conn:
        conn.execute(text(insert_sql), {"t": T0.replace(tzinfo=None)})
    old.dispose()


def test_old_database_is_upgraded_on_open_keeping_its_rows(db_url: str) -> None:
    _row_at_revision(db_url, "0001", (
        "INSERT INTO rental_sessions (provider, region, zone, instance_type, gpu_model,"
        " gpu_count, market, state, start_at, volume_gb, volume_type, public_ipv4, note,"
        " tags, min_billed_s, interruption_free_s, ebs_usd_per_gb_month, ipv4_usd_per_hour,"
        " owned, created_at) VALUES ('aws', '', 'us-east-1a', 'g4dn.xlarge', 't4', 1,"
        " 'spot', 'running', :t, 0, 'gp3', false, 'from 0.1', '{}', 60, 3600, 0, 0,"
        " false, :t)"
    ))
    engine = open_engine(db_url)
    assert current_revision(engine) == HEAD
    book = Ledger(engine, now=lambda: T0 + timedelta(hours=1))
    (view,) = book.sessions()
    assert view.session.note == "from 0.1" and view.running


def test_alert_sends_of_0002_upgrade_without_fields(db_url: str) -> None:
    from ledger.alerts.check import stored_message, unsent

    _row_at_revision(db_url, "0002", (
        "INSERT INTO alert_sends (rule, period, channel, status, subject, body, attempts,"
        " last_error, created_at) VALUES ('budget', '2026-10:50%', 'hook', 'failed', 's',"
        " 'b', 1, 'down', :t)"
    ))
    (row,) = unsent(Ledger(open_engine(db_url)))
    assert row.message_fields is None
    message = stored_message(row)
    assert (message.subject, message.text, message.fields) == ("s", "b", {})


def test_session_round_trip_is_exact(ledger: Ledger) -> None:
    sid = ledger.record_session(spot(tags={"team": "archive"}, note="ü"), AWS)
    (view,) = ledger.sessions()
    s = view.session
    assert s.id == sid and s.start_at == T0 and s.start_at.tzinfo is not None
    assert s.end_at == T0 + timedelta(hours=2) and s.end_reason == "completed"
    assert s.tags == {"team": "archive"} and s.note == "ü"
    assert s.min_billed_s == 60 and s.ebs_usd_per_gb_month == D("0.08")
    assert view.cost.compute_usd == D("0.4")
    assert view.cost.storage_usd == D(100) * D("0.08") * 2 / 730


def test_launch_lifecycle_and_price_change(ledger: Ledger) -> None:
    sid = ledger.record_session(spot(hours=None, state="launching"), AWS)
    assert ledger.get_session(sid).state == "launching"
    ledger.set_instance(sid, "i-0123456789abcdef0")
    ledger.record_price(sid, D("0.4"), T0 + timedelta(hours=1))
    cost = ledger.end_session(sid, T0 + timedelta(hours=2), "completed")
    assert cost.compute_usd == D("0.2") + D("0.4")
    s = ledger.get_session(sid)
    assert (s.state, s.instance_id) == ("ended", "i-0123456789abcdef0")
    # closing again keeps the first end
    ledger.end_session(sid, T0 + timedelta(hours=9), "user")
    assert ledger.get_session(sid).end_reason == "completed"


def test_month_usage_and_cumulative_rent(ledger: Ledger) -> None:
    ledger.record_sessions([
        (spot(datetime(2026, 9, 30, 23, 0, tzinfo=UTC), hours=2), AWS),
        (spot(datetime(2026, 10, 10, tzinfo=UTC), hours=10), AWS),
        (NewSession("local", "rtx3060", T0, D("0.05"), end_at=T0 + timedelta(hours=5)),
         BUILTIN_PROVIDERS["local"]),
    ])
    usage = ledger.month_usage(["2026-09", "2026-10"])
    # stored cost lines keep nano-dollars (1e-9 USD): round the expected parts the same way
    def storage(hours: int) -> D:
        return (D(100) * D("0.08") * hours / 730).quantize(D("1e-9"))

    assert usage["2026-09"] == (D("0.2") + storage(1), {"t4": D(1)})
    assert usage["2026-10"] == (D("0.2") + D("2.0") + storage(11), {"t4": D(11)})
    assert ledger.cumulative_rent("2026-10") == D("2.4") + storage(1) + storage(11)
    owned = ledger.month_usage(["2026-10"], include_owned=True)["2026-10"]
    assert owned[1]["rtx3060"] == D(5)


def test_bad_session_writes_nothing(ledger: Ledger) -> None:
    with pytest.raises(InputError, match="ends before it starts"):
        ledger.record_sessions([(spot(), AWS), (spot(hours=-1), AWS)])
    assert ledger.sessions() == []


def test_jobs_and_measured_throughput(ledger: Ledger) -> None:
    for i, lps in enumerate([100.0, 140.0, 120.0]):
        ledger.create_job(Job(id=f"j{i}", kind="train", gpu_model="t4", status="done"))
        ledger.update_job(f"j{i}", lines_per_s=lps, best_cer=0.05)
    assert ledger.measured_lines_per_s("train", "t4") == 120.0
    assert ledger.measured_lines_per_s("train", "l4") is None
    assert ledger.get_job("j1").best_cer == 0.05


def test_throughput_is_never_pooled_across_sizes_devices_or_hosts(ledger: Ledger) -> None:
    rows = [("t", "t4", "tiny", "cuda", 30.0, "a"), ("l", "t4", "large", "cuda", 5.0, "a"),
            ("l2", "t4", "large", "cuda", 7.0, "a"), ("c", "cpu", "tiny", "cpu", 25.0, "a"),
            ("c2", "cpu", "tiny", "cpu", 9.0, "b"), ("old", "t4", None, None, 99.0, "a")]
    for job_id, gpu, size, device, lps, host in rows:
        ledger.create_job(Job(id=job_id, kind="train", gpu_model=gpu, status="done", model_size=size,
                              device=device, lines_per_s=lps, spec={"host": host}))
    measured = ledger.measured_lines_per_s
    assert measured("train", "t4", model_size="tiny", device="cuda") == 30.0
    assert ledger.throughputs("train", "t4", model_size="large", device="cuda") == [5.0, 7.0]
    assert measured("train", "t4", model_size="small", device="cuda") is None
    assert measured("train", "cpu", model_size="tiny", device="cpu", host="a") == 25.0
    assert measured("train", "cpu", model_size="tiny", device="cpu", host="b") == 9.0
    assert measured("train", "cpu", model_size="tiny", device="cpu", host="c") is None


def test_quote_and_actuals_round_trip_and_quote_errors(ledger: Ledger) -> None:
    ledger.create_job(Job(id="q", kind="train", gpu_model="cpu", quoted_s=240.0,
                          quoted_usd=D("0.0012"), model_size="tiny", device="cpu"))
    assert ledger.quote_errors() == {}  # not ended yet: no error to show
    ledger.update_job("q", actual_s=220.0, actual_usd=D("0.0011"))
    job = ledger.get_job("q")
    assert (job.quoted_usd, job.actual_usd) == (D("0.0012"), D("0.0011"))
    assert ledger.quote_errors() == {"q": pytest.approx(220 / 240 - 1)}


def test_jobs_of_0003_upgrade_without_size_or_quote(db_url: str) -> None:
    _row_at_revision(db_url, "0003", (
        "INSERT INTO jobs (id, kind, spec, status, gpu_model, created_at, lines_per_s, metrics)"
        " VALUES ('j0', 'train', '{}', 'done', 't4', :t, 29.7, '{}')"
    ))
    book = Ledger(open_engine(db_url))
    job = book.get_job("j0")
    assert (job.lines_per_s, job.model_size, job.quoted_s, job.actual_usd) == (29.7, None, None, None)
    # a pooled measurement of unknown size quotes no size
    assert book.measured_lines_per_s("train", "t4", model_size="large", device="cuda") is None
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parents[2] / "ledger" / "migrations"))
    with book.engine.connect() as conn:  # the downgrade drops the new columns, keeps the row
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
        conn.commit()
        assert "quoted_s" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert conn.execute(text("SELECT lines_per_s FROM jobs")).scalar() == 29.7


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(LedgerError, match="check the --db URL") as info:
        open_engine("postgresql://someone:secret@127.0.0.1:1/nothing")
    message = str(info.value)
    assert "secret" not in message
    # psycopg's own message spans two lines ("...\n\tIs the server running ..."): joined.
    assert "\n" not in message and "\t" not in message and "  " not in message
    assert "Is the server running" in message
    assert message.endswith("check the --db URL, that the server is running and that you may write to it")
    from tests.conftest import Cli

    r = Cli("postgresql://someone:secret@127.0.0.1:1/nothing")("ledger", "list")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("error: cannot open or upgrade the ledger at ")
    assert r.stderr.count("\n") == 1 and "secret" not in r.stderr


def _writer(url: str, worker: int, count: int) -> None:
    book = Ledger(open_engine(url))
    for i in range(count):
        start = T0 + timedelta(minutes=i)
        book.record_session(
            NewSession("runpod", "a100", start, D("1.19"), end_at=start + timedelta(minutes=30),
                       note=f"w{worker}-{i}"),
            DEFAULT_RULES,
        )


def test_two_processes_recording_at_once_lose_nothing(db_url: str) -> None:
    open_engine(db_url).dispose()  # schema first, as the CLI does on open
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db_url, w, 60)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    book = Ledger(open_engine(db_url))
    notes = {v.session.note for v in book.sessions()}
    assert notes == {f"w{w}-{i}" for w in (1, 2) for i in range(60)}
    with book.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM cost_lines")).scalar() == 120
