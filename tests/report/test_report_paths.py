"""`gpuhire report` checks where it will write and whether it can mail before any work:
a missing folder or no [report] channel is one line, and nothing is printed or written."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ledger.errors import InputError
from tests.cli.test_bad_input import one_line


@pytest.mark.parametrize("flag", ["--plot", "--output"])
def test_missing_folder_is_refused_before_the_report(sqlite_book: str, tmp_path: Path, cli_on,
                                                      flag: str) -> None:
    target = tmp_path / "missing" / "x.png"
    r = cli_on(sqlite_book)("report", "--month", "2026-10", flag, str(target))
    assert one_line(r, 2) == (
        f"cannot write {flag} {target}: the folder {target.parent} does not exist; "
        "create the folder first, or give another path"
    )
    assert r.stdout == ""


def test_no_chart_is_written_when_the_output_cannot_be(sqlite_book: str, tmp_path: Path,
                                                        cli_on) -> None:
    chart = tmp_path / "chart.png"
    r = cli_on(sqlite_book)("report", "--month", "2026-10", "--plot", str(chart),
                            "--output", str(tmp_path))
    assert one_line(r, 2) == f"cannot write --output {tmp_path}: it is a folder; give a file name"
    assert not chart.exists()


def test_send_without_a_channel_fails_before_printing(sqlite_book: str, cli_on) -> None:
    r = cli_on(sqlite_book)("report", "--month", "2026-10", "--send")
    assert one_line(r, 2) == (
        "no channel to mail the report on; set [report] channel to an email channel of "
        "[alerts.channels]"
    )
    assert r.stdout == ""


def test_chart_that_cannot_be_written_is_an_input_error(tmp_path: Path) -> None:
    from ledger.catalogue import BUILTIN_CARDS
    from ledger.ownership import MonthUsage, OwnershipParams
    from ledger.plot import ownership_series, render_chart

    usage = [MonthUsage("2026-10", Decimal(0), {})]
    series = ownership_series(usage, BUILTIN_CARDS["rtx3060"], OwnershipParams())
    with pytest.raises(InputError, match=r"cannot write the chart to .*No such file or directory"):
        render_chart(series, tmp_path / "missing" / "x.png")
