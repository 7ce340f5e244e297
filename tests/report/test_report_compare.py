"""The monthly report puts the month's inference next to the commercial per-page price.

October 2026, worked out by hand (infer jobs that ended in October with a page count):
  i1: 2,000 pages, runpod t4 2 h x 1.025 = 2.05;  i2: 1,000 pages, 1 h x 2.05 = 2.05
  -> 3,000 pages for 4.10: "these 3,000 pages cost $4.10 here; at the commercial price of
     $0.05425/page: $162.75"; per 1,000 pages 4.10 / 3 = 1.366666667 here, 54.25 there.
Left out: i0 ended in September; a calibration and a stopped job carry no page count; a train job.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from launcher.config import load_settings
from ledger.book import Ledger, NewSession
from ledger.catalogue import DEFAULT_RULES
from ledger.db import open_engine
from ledger.models import Job
from ledger.report import build_report
from ledger.report_formats import render_table

LINE = "these 3,000 pages cost $4.10 here; at the commercial price of $0.05425/page: $162.75"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _infer(ledger: Ledger, job: str, pages: int | None, start: str, end: str, usd_per_hour: str,
           kind: str = "infer", status: str = "done") -> None:
    metrics = {} if pages is None else {"pages": pages, "dead": 0, "usd": "0"}
    ledger.create_job(Job(id=job, kind=kind, status=status, ended_at=t(end), metrics=metrics))
    ledger.record_session(NewSession("runpod", "t4", t(start), D(usd_per_hour), end_at=t(end),
                                     job_id=job), DEFAULT_RULES)


def _seed(url: str) -> Ledger:
    ledger = Ledger(open_engine(url), now=lambda: t("2026-11-15T00:00"))
    _infer(ledger, "i1", 2000, "2026-10-05T01:00", "2026-10-05T03:00", "1.025")
    _infer(ledger, "i2", 1000, "2026-10-20T10:00", "2026-10-20T11:00", "2.05")
    _infer(ledger, "i0", 500, "2026-09-30T20:00", "2026-09-30T23:00", "1.00")  # September's
    _infer(ledger, "stopped", None, "2026-10-07T00:00", "2026-10-07T01:00", "1.00", status="stopped")
    _infer(ledger, "calibrate-1", None, "2026-10-08T00:00", "2026-10-08T00:01", "0", status="calibration")
    _infer(ledger, "train-1", None, "2026-10-09T00:00", "2026-10-09T05:00", "0.50", kind="train")
    return ledger


def test_report_cli_shows_the_comparison(sqlite_db: str, tmp_path: Path, cli_on: Callable[..., Any]) -> None:
    _seed(sqlite_db)
    run = cli_on(sqlite_db)
    table = run("report", "--month", "2026-10")
    assert table.exit_code == 0, table.stderr
    assert "pages recognised           3,000 in 2 infer job(s)" in table.stdout
    assert f"vs commercial service      {LINE}" in table.stdout
    assert ("per 1,000 pages            $1.37 here, $54.25 at Transkribus (arXiv 2504.00414, "
            "Table 1: print model M1, USD 54.25 per 1,000 pages, 2025)") in table.stdout
    data = json.loads(run("report", "--month", "2026-10", "--format", "json").stdout)
    n = data["inference"]
    assert (n["jobs"], n["pages"], n["usd"]) == (2, 3000, "4.1")
    c = n["comparison"]
    assert (c["line"], c["usd_per_1000_pages"], c["savings_usd"]) == (LINE, "1.366666667", "158.65")
    assert (c["commercial"]["usd"], c["commercial"]["usd_per_1000_pages"]) == ("162.75", "54.25")
    rows = dict(csv.reader(io.StringIO(run("report", "--month", "2026-10", "--format", "csv").stdout)))
    assert rows["inference.comparison.commercial.usd"] == "162.75"
    assert rows["inference.comparison.line"] == LINE
    assert f"| vs commercial service | {LINE} |" in run("report", "--month", "2026-10",
                                                       "--format", "markdown").stdout
    page = tmp_path / "r.html"
    html = run("report", "--month", "2026-10", "--format", "html", "--output", str(page))
    assert html.exit_code == 0, html.stderr
    assert f"<td>vs commercial service</td><td>{LINE}</td>" in page.read_text()


def test_no_pages_no_line(sqlite_db: str, cli_on: Callable[..., Any]) -> None:
    _seed(sqlite_db)
    run = cli_on(sqlite_db)
    table = run("report", "--month", "2026-11")
    assert table.exit_code == 0 and "commercial" not in table.stdout and "pages recognised" not in table.stdout
    data = json.loads(run("report", "--month", "2026-11", "--format", "json").stdout)
    assert data["inference"] == {"jobs": 0, "pages": 0, "usd": "0", "comparison": None}
    september = json.loads(run("report", "--month", "2026-09", "--format", "json").stdout)["inference"]
    assert (september["pages"], september["usd"]) == (500, "3")


def test_the_configured_price(db_url: str, tmp_path: Path) -> None:  # SQLite and PostgreSQL
    config = tmp_path / "config.toml"
    config.write_text('[compare]\nservice = "Transkribus credits"\nprice_per_page = "0.199"\n'
                      'currency = "EUR"\nusd_per_unit = "1.08"\nsource = "price list"\nas_of = "2025-06"\n')
    report = build_report(_seed(db_url), "2026-10", compare=load_settings(config).compare)
    assert report.inference is not None and (report.inference.pages, report.inference.usd) == (3000, D("4.10"))
    text = render_table(report)
    assert ("these 3,000 pages cost $4.10 here; at the commercial price of EUR 0.199/page "
            "(at 1.08 USD/EUR: $0.21492/page): $644.76") in text
    assert "$1.37 here, $214.92 at Transkribus credits (price list, 2025-06)" in text


def test_the_cli_uses_the_configured_price(sqlite_db: str, tmp_path: Path, cli_on: Callable[..., Any]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[compare]\nprice_per_page = "0.108"\nsource = "own quote"\nas_of = "2026-11"\n')
    _seed(sqlite_db)
    table = cli_on(sqlite_db, config)("report", "--month", "2026-10")
    assert table.exit_code == 0, table.stderr
    assert "at the commercial price of $0.108/page: $324.00" in table.stdout
    assert "$0.05425" not in table.stdout
