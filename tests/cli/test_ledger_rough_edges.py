"""Rough edges a hostile new user found in the ledger commands, through the CLI runner: the
exit code and the one line the user sees (real SQLite; the in-process runner)."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.timeutil import utcnow
from tests.conftest import Cli

SESSION = ["--provider", "runpod", "--gpu", "a100", "--start", "2026-10-01T08:00Z",
           "--end", "2026-10-01T10:00Z", "--usd-per-hour", "1.19"]
NO_AWS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
          "AWS_PROFILE": None, "AWS_CONFIG_FILE": os.devnull,
          "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


def one_line(result: Any, code: int) -> str:
    """The error line of a failed command (checked: one line, that exit code, no traceback)."""
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return str(result.stderr.removeprefix("error: ").rstrip("\n"))


def ids(cli: Cli) -> list[int]:
    return [r["id"] for r in json.loads(cli("ledger", "list", "--format", "json").stdout)]


def ago(hours: float) -> str:
    return (utcnow() - timedelta(hours=hours)).replace(microsecond=0).isoformat()


# -- 5: report --plot with a GPU of unknown speed ----------------------------------------------
def test_report_plot_with_unknown_gpu_speed_prints_the_report_then_says_why(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli("ledger", "add", *SESSION).exit_code == 0
    chart = tmp_path / "chart.png"
    r = cli("report", "--month", "2026-10", "--plot", str(chart))
    assert one_line(r, 2) == (
        f"the report is complete, but no chart was drawn to {chart}: no training speed is "
        "known for GPU 'a100'; add it to the config, e.g. [speeds] a100 = \"2.0\" (relative to "
        "a T4)"
    )
    assert "total rent                 $2.38" in r.stdout  # the report itself is printed
    assert "unavailable" in r.stdout and not chart.exists()
    plain = cli("report", "--month", "2026-10")
    assert plain.exit_code == 0 and plain.stdout == r.stdout  # the same report as without --plot


# -- 6: status lists open sessions of no job -----------------------------------------------------
def test_status_lists_open_sessions_without_a_job_with_their_cost(
    cli: Cli, tmp_path: Path
) -> None:
    start = ago(2)
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--market", "spot",
            "--start", start, "--usd-per-hour", "1.00")
    assert r.exit_code == 0, r.stderr
    f = tmp_path / "open.csv"
    f.write_text(f"provider,gpu,start,end,usd_per_hour\nrunpod,a100,{ago(1)},,2.00\n")
    assert cli("ledger", "import", str(f)).exit_code == 0
    r = cli("status", "--format", "json", env=NO_AWS)
    assert r.exit_code == 0 and r.stderr == ""  # a session added by hand needs no AWS
    rows = json.loads(r.stdout)
    assert [(x["job"], x["provider"], x["market"], x["state"], x["session_id"]) for x in rows] == [
        (None, "aws", "spot", "open in the ledger (no end recorded)", 1),
        (None, "runpod", "on-demand", "open in the ledger (no end recorded)", 2),
    ]
    assert Decimal(rows[0]["usd_so_far"]) >= Decimal("2.00")  # 2 h at 1.00 USD/h so far
    assert Decimal(rows[1]["usd_so_far"]) >= Decimal("2.00")
    table = cli("status", env={**NO_AWS, "COLUMNS": "250"})
    assert table.exit_code == 0 and "nothing running" not in table.stdout
    [line] = [x for x in table.stdout.splitlines() if " aws " in x]
    assert line.split("│")[1].strip() == "-"  # the job column
    assert "open in the ledger (no end recorded)" in line and "$2.0" in line


# -- 7: a CSV without an end column; malformed quoting ----------------------------------------
def test_import_without_an_end_column_is_refused(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "noend.csv"
    f.write_text("provider,gpu,start,usd_per_hour\n"
                 "runpod,a100,2026-10-01T08:00Z,1.19\nrunpod,a100,2026-10-02T08:00Z,1.19\n")
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f} has no end column, so all 2 row(s) would be recorded as sessions still running, "
        "costed up to now; nothing was written; add an end column with each session's end (an "
        "empty cell marks one still running)"
    )
    assert ids(cli) == []
    f.write_text("provider,gpu,start,end,usd_per_hour\n"
                 "runpod,a100,2026-10-01T08:00Z,2026-10-01T09:00Z,1.19\n"
                 "runpod,a100,2026-10-02T08:00Z,,1.19\n")  # an empty end cell: still running
    assert cli("ledger", "import", str(f)).exit_code == 0
    rows = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert [r["end"] for r in rows] == ["2026-10-01T09:00:00Z", None]


@pytest.mark.parametrize(("body", "line", "why"), [
    ('runpod,a100,2026-10-01T08:00Z,2026-10-01T09:00Z,1.19,"fine"\n'
     'runpod,a100,2026-10-02T08:00Z,2026-10-02T09:00Z,1.19,"never closed\n'
     'runpod,a100,2026-10-03T08:00Z,2026-10-03T09:00Z,1.19,last\n', 3, "unexpected end of data"),
    ('runpod,a100,2026-10-01T08:00Z,2026-10-01T09:00Z,1.19,"closed"early\n', 2,
     "',' expected after '\"'"),
])
def test_import_with_malformed_quoting_names_the_line(
    cli: Cli, tmp_path: Path, body: str, line: int, why: str
) -> None:
    f = tmp_path / "quotes.csv"
    f.write_text("provider,gpu,start,end,usd_per_hour,note\n" + body)
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f}: line {line}: malformed CSV quoting ({why}), nothing was written; close every "
        'quoted cell, and write a " inside a quoted cell as ""'
    )
    assert ids(cli) == []


def test_import_keeps_a_quoted_note_over_two_lines(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "multi.csv"
    f.write_text('provider,gpu,start,end,usd_per_hour,note\n'
                 'runpod,a100,2026-10-01T08:00Z,2026-10-01T09:00Z,1.19,"two\nlines, ""quoted"""\n')
    assert cli("ledger", "import", str(f)).exit_code == 0
    [row] = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert row["note"] == 'two\nlines, "quoted"'


# -- 10: a spot interruption of a session that is not spot --------------------------------------
def test_spot_interruption_of_an_on_demand_session_is_refused(cli: Cli, tmp_path: Path) -> None:
    for market in (["--market", "on-demand"], []):  # on-demand is also the default
        r = cli("ledger", "add", *SESSION, *market, "--end-reason", "spot-interruption")
        assert one_line(r, 2) == (
            "--end-reason spot-interruption is for spot sessions, and this one is on-demand; "
            "add --market spot, or give another --end-reason (completed, user or unknown)"
        )
    f = tmp_path / "interrupted.csv"
    f.write_text("provider,gpu,start,end,usd_per_hour,market,end_reason\n"
                 "aws,t4,2026-10-01T08:00Z,2026-10-01T09:00Z,0.5,on-demand,spot-interruption\n")
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f}: 1 bad row(s), nothing was written: line 2: end_reason spot-interruption is for "
        "spot sessions, and this one is on-demand; set market to spot, or give another "
        "end_reason (completed, user or unknown)"
    )
    assert ids(cli) == []
    r = cli("ledger", "add", *SESSION, "--market", "spot", "--end-reason", "spot-interruption")
    assert r.exit_code == 0, r.stderr


# -- 13: an explicit SQLite URL whose folder does not exist ---------------------------------------
def test_db_in_a_missing_folder_is_refused_not_created(tmp_path: Path) -> None:
    from launcher.cli import app

    folder = tmp_path / "nonexistent-dir" / "x"
    url = f"sqlite:///{folder}/ledger.db"
    expected = (
        f"the ledger's folder {folder} does not exist (is the --db or GPUHIRE_DB path "
        "mistyped?); check the path, create the folder first, or pass --db with a writable "
        "path or set GPUHIRE_DB"
    )
    assert one_line(Cli(url)("ledger", "list"), 1) == expected
    by_env = CliRunner().invoke(app, ["ledger", "list"], env={"GPUHIRE_DB": url})
    assert one_line(by_env, 1) == expected
    assert not (tmp_path / "nonexistent-dir").exists()
    default = CliRunner().invoke(app, ["ledger", "list", "--format", "json"])  # the data dir
    assert default.exit_code == 0 and default.stdout == "[]\n", default.stderr
    assert (Path(os.environ["XDG_DATA_HOME"]) / "gpuhire" / "ledger.db").is_file()


# -- 14: a read-only ledger, a full disk -----------------------------------------------------------
def test_read_only_ledger_says_it_cannot_be_opened_not_that_nothing_was_recorded(cli: Cli) -> None:
    from ledger.db import open_engine

    open_engine(cli.db).dispose()  # a ledger, then no connection left open on it
    path = cli.db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # without a WAL, SQLite must write to open it
        conn.execute("PRAGMA journal_mode=DELETE")
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert one_line(Cli(url)("ledger", "list"), 1) == (
        f"the ledger at {url} is read-only, so it cannot be opened (SQLite writes its -wal and "
        "-shm files next to it even to read); make the file and its folder writable (and drop "
        "mode=ro from the URL), or pass --db with a ledger you may write to"
    )
    assert ids(cli) == []  # the ledger itself is fine


def test_full_disk_during_import_says_free_space(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ledger.db

    assert cli("ledger", "add", *SESSION).exit_code == 0
    pragmas = ledger.db._sqlite_pragmas

    def full_disk(engine: Any, busy_timeout_s: float) -> None:  # no page beyond today's
        pragmas(engine, busy_timeout_s)

        @ledger.db.event.listens_for(engine, "connect")
        def _cap(dbapi_conn: Any, _record: Any) -> None:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(ledger.db, "_sqlite_pragmas", full_disk)
    f = tmp_path / "big.csv"
    rows = [f"runpod,a100,2026-10-{1 + i % 28:02d}T{i % 24:02d}:00Z,,1.19,{'x' * 900}"
            for i in range(300)]
    f.write_text("provider,gpu,start,end,usd_per_hour,note\n" + "\n".join(rows) + "\n")
    assert one_line(cli("ledger", "import", str(f)), 1) == (
        f"the disk holding the ledger at {cli.db} is full, so nothing was recorded; free space "
        "on that disk (or pass --db with a ledger on another disk), then run this again"
    )
    monkeypatch.undo()
    assert ids(cli) == [1]


# -- ledger add twice -----------------------------------------------------------------------------
def test_adding_the_same_session_twice_is_refused_unless_allowed(cli: Cli) -> None:
    assert cli("ledger", "add", *SESSION).exit_code == 0
    assert one_line(cli("ledger", "add", *SESSION), 2) == (
        "an identical session (same provider, GPU, start, end, price, instance type and zone) "
        "is already in the ledger, nothing was recorded; adding it again would count its rent "
        "twice: see `gpuhire ledger list`, or pass --allow-duplicates if it is another machine"
    )
    assert ids(cli) == [1]
    r = cli("ledger", "add", *SESSION, "--allow-duplicates")
    assert r.exit_code == 0 and r.stdout == "recorded session 2: 7200 s billed, $2.3800\n"
    assert ids(cli) == [1, 2]
