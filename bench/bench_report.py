"""Benchmark: the monthly report, the rent-vs-owning series and an alert check on a big ledger.

Reuses bench_ledger's synthetic ledger (closed AWS spot sessions spread over 36 months). The
report aggregates one month's cost lines in SQL, joined with their sessions and jobs; the series
sums 36 months; the check evaluates a monthly budget, a rent fraction and a buy-signal rule.

    python bench/bench_report.py [--sessions 1000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_ledger import populate

from launcher.config import Settings
from ledger.alerts import run_checks
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.plot import series_from_ledger
from ledger.report import build_report
from ledger.report_formats import render_html


def _timed(label: str, fn):
    began = time.perf_counter()
    value = fn()
    print(f"{label:34s} {time.perf_counter() - began:8.3f} s")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse/keep this SQLite file")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    if not path.exists():
        print(f"populated {args.sessions:,} sessions in {populate(path, args.sessions):.1f} s")
    now = datetime(2026, 12, 15, tzinfo=UTC)
    book = Ledger(open_engine(f"sqlite:///{path}"), now=lambda: now)
    settings = Settings.model_validate({"alerts": {"rules": [
        {"name": "budget", "type": "monthly_budget", "budget_usd": "100"},
        {"name": "half", "type": "rent_fraction"},
        {"name": "buy", "type": "buy_signal"},
    ]}})
    card, params = settings.card(), settings.ownership_params()
    report = _timed("report, one month (SQL)", lambda: build_report(book, "2026-06", card, params))
    print(f"  {report.sessions:,} session-months, {report.total_usd:.2f} USD")
    series = _timed("rent vs owning, 36 months", lambda: series_from_ledger(
        book, "2026-12", card, params))
    print(f"  crossover {series.crossover_month}")
    _timed("HTML render (no chart)", lambda: render_html(report))
    result = _timed("alerts check, 3 rules (dry run)", lambda: run_checks(
        book, settings, dry_run=True, out=io.StringIO()))
    print(f"  {len(result.fired)} alert(s) fired")


if __name__ == "__main__":
    main()
