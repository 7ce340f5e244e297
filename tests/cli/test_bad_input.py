"""Bad ledger input through the CLI: one line on stderr naming the fix, a non-zero exit, no
traceback, and nothing already recorded lost (real SQLite, the in-process runner)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ledger.timeutil import utcnow
from tests.conftest import Cli

SESSION = ["--provider", "runpod", "--gpu", "a100", "--start", "2026-10-01T08:00Z",
           "--end", "2026-10-01T09:00Z"]


def one_line(result, code: int) -> str:
    """The error line of a failed command (checked: one line, that exit code, no report)."""
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    return str(result.stderr.removeprefix("error: ").rstrip("\n"))


def totals(cli: Cli) -> list[str]:
    return [r["total_usd"] for r in json.loads(cli("ledger", "list", "--format", "json").stdout)]


# -- the ledger cannot be written --------------------------------------------------------------
def test_read_only_ledger_names_the_fix_and_keeps_the_rows(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli("ledger", "add", *SESSION, "--usd-per-hour", "1").exit_code == 0
    path = cli.db.removeprefix("sqlite:///")
    read_only = Cli(f"sqlite:///file:{path}?mode=ro&uri=true")
    line = one_line(read_only("ledger", "add", *SESSION, "--usd-per-hour", "2"), 1)
    assert line == (
        f"the ledger at sqlite:///file:{path}?mode=ro&uri=true is read-only, so nothing was "
        "recorded; make the file and its folder writable (and drop mode=ro from the URL), or "
        "pass --db with a ledger you may write to"
    )
    assert not (tmp_path / "file:").exists()  # the URI was not taken for a folder to create
    assert read_only("ledger", "list").exit_code == 0  # reading it is fine
    assert totals(cli) == ["1"]


def test_ledger_file_that_cannot_be_opened(tmp_path: Path) -> None:
    url = f"sqlite:///file:{tmp_path}/nothing-here.db?mode=ro&uri=true"
    line = one_line(Cli(url)("ledger", "list"), 1)
    assert line.startswith(f"cannot open the ledger file at sqlite:///file:{tmp_path}/nothing-here.db")
    assert "check that its folder exists and that you may write to it" in line


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://"])
def test_sqlite_url_without_a_file_is_refused(url: str) -> None:
    line = one_line(Cli(url)("ledger", "add", *SESSION, "--usd-per-hour", "1"), 1)
    assert line == (
        "the database URL 'sqlite:///' names no file (SQLite would keep the ledger in memory "
        "and lose it); give a path, e.g. --db sqlite:///ledger.db or sqlite:////home/me/ledger.db"
    )


# -- ledger add and the months and times a user may name -----------------------------------
@pytest.mark.parametrize(("args", "line"), [
    (["--usd-per-hour", "1e400"],
     "--usd-per-hour '1e400' is above 100000 USD/h; give the whole machine's price per hour in USD"),
    (["--usd-per-hour", "0.0000000001"],
     "--usd-per-hour '0.0000000001' is finer than the ledger keeps (1e-9 USD); round it to at "
     "most 9 decimal places"),
    (["--usd-per-hour", "1", "--on-demand-usd-per-hour", "2.0000000005"],
     "--on-demand-usd-per-hour '2.0000000005' is finer than the ledger keeps (1e-9 USD); round "
     "it to at most 9 decimal places"),
    (["--usd-per-hour", "1", "--count", "99999999999999999999"],
     "GPU count 99999999999999999999 is above 100000; give the GPUs of one machine (or record "
     "one session per machine)"),
    (["--usd-per-hour", "1", "--volume-gb", "99999999999999999999"],
     "volume 99999999999999999999 GB is above 1000000 GB; give the attached disk in GB"),
])
def test_add_refuses_amounts_the_ledger_cannot_keep(cli: Cli, args: list[str], line: str) -> None:
    assert cli("ledger", "add", *SESSION, "--usd-per-hour", "1").exit_code == 0
    assert one_line(cli("ledger", "add", *SESSION, *args), 2) == line
    assert totals(cli) == ["1"]


def test_add_keeps_nine_decimal_places_exactly(cli: Cli) -> None:
    assert cli("ledger", "add", *SESSION, "--usd-per-hour", "0.123456789").exit_code == 0
    assert totals(cli) == ["0.123456789"]


def test_empty_provider_names_the_flag(cli: Cli) -> None:
    r = cli("ledger", "add", "--provider", "", "--gpu", "a100", "--start", "2026-10-01T08:00Z",
            "--usd-per-hour", "1")
    assert one_line(r, 2) == "--provider is empty; give --provider, e.g. runpod"


def test_start_in_the_future_is_refused(cli: Cli, tmp_path: Path) -> None:
    later = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    text = later.isoformat().replace("+00:00", "Z")
    r = cli("ledger", "add", "--provider", "runpod", "--gpu", "a100", "--start", text,
            "--usd-per-hour", "1")
    assert one_line(r, 2) == (
        f"--start {text} is in the future; record a session once it has started (a time "
        "without an offset is UTC)"
    )
    soon = (utcnow() + timedelta(seconds=30)).isoformat()  # within the clock-skew minute
    r = cli("ledger", "add", "--provider", "runpod", "--gpu", "a100", "--start", soon,
            "--usd-per-hour", "1")
    assert r.exit_code == 0, r.stderr
    f = tmp_path / "later.csv"
    f.write_text(f"provider,gpu,start,usd_per_hour\nrunpod,a100,{text},1\n")
    assert "line 2: start" in one_line(cli("ledger", "import", str(f)), 2)
    assert len(totals(cli)) == 1


@pytest.mark.parametrize(("args", "line"), [
    (["ledger", "list", "--month", "9999-12"],
     "month '9999-12' is out of range; give a month between 1970-01 and 9998-12"),
    (["ledger", "list", "--month", "1969-12"],
     "month '1969-12' is out of range; give a month between 1970-01 and 9998-12"),
    (["advise", "--as-of", "0001-02-15"],
     "--as-of '0001-02-15' is out of range; give a time between 1970-01 and 9998-12"),
])
def test_months_and_times_out_of_range(cli: Cli, args: list[str], line: str) -> None:
    assert one_line(cli(*args), 2) == line
