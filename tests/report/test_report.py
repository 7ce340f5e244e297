"""The monthly report against a hand-computed ledger (tests/report/conftest.py), every format.

October 2026, worked out by hand:
  aws t4 spot 10 h at 0.20 = 2.00 compute; 100 GB x 0.08 x 10/730 = 0.109589041 disk (nano-USD);
      IPv4 10 h x 0.005 = 0.05; total 2.159589041; on-demand 10 h x 0.526 = 5.26 -> saves 3.26;
      job j1 at 75 % utilisation -> idle 2.159589041 x 0.25 = 0.53989726025
  aws l4 spot 2 h at 0.30, interrupted after the free hour = 0.60 (no on-demand price: unknown)
  runpod 2x a10g 4 h at 1.20 = 4.80, 8 GPU-h
  runpod t4 22:00-24:00 on the 31st at 1.00 = 2.00 (its other 2 h are November's)
  total 9.559589041; GPU-h 10 + 2 + 8 + 2 = 22; compute 9.40
  owned rtx3060 5 h at 0.10 = 0.50 running cost, not rent
  September 4.00 -> change +5.559589041 = +138.989726025 %
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import pytest

from launcher.config import Settings
from launcher.output import to_json
from ledger.book import Ledger
from ledger.report import build_report
from ledger.report_formats import render_csv, render_html, render_markdown, render_table, report_dict

MONTH = "2026-10"


def _oct(book: Ledger):
    s = Settings()
    return build_report(book, MONTH, s.card("rtx3060"), s.ownership_params())


def test_october_numbers_exact(book: Ledger) -> None:
    r = _oct(book)
    assert r.total_usd == D("9.559589041")
    assert r.gpu_hours == D(22)
    assert (r.compute_usd, r.storage_usd, r.ipv4_usd) == (D("9.40"), D("0.109589041"), D("0.05"))
    assert r.sessions == 4 and r.running_sessions == 0
    assert [(p.key, p.usd, p.gpu_hours, p.sessions) for p in r.by_gpu] == [
        ("a10g", D("4.80"), D(8), 1), ("t4", D("4.159589041"), D(12), 2), ("l4", D("0.60"), D(2), 1)]
    assert {p.key: p.usd for p in r.by_provider} == {"runpod": D("6.80"), "aws": D("2.759589041")}
    assert {p.key: p.usd for p in r.by_market} == {"on-demand": D("6.80"), "spot": D("2.759589041")}
    assert {p.key: p.usd for p in r.by_job} == {"(none)": D("7.40"), "j1": D("2.159589041")}
    s = r.spot
    assert (s.spot_compute_usd, s.on_demand_usd, s.savings_usd) == (D("2.00"), D("5.26"), D("3.26"))
    assert (s.sessions_known, s.sessions_unknown, s.unknown_compute_usd) == (1, 1, D("0.60"))
    i = r.interruptions
    assert (i.count, i.usd, i.hours) == (1, D("0.60"), D(2))
    assert r.idle.idle_usd == D("0.53989726025")
    assert (r.idle.sessions_known, r.idle.sessions_unknown) == (1, 3)
    assert (r.owned.gpu_hours, r.owned.running_usd, r.owned.sessions) == (D(5), D("0.50"), 1)
    assert (r.previous_month, r.previous_total_usd) == ("2026-09", D(4))
    assert r.change_usd == D("5.559589041")
    assert r.change_pct == D("138.989726025")
    assert r.advice is not None and r.advice.months[-1].month == MONTH
    assert r.advice.cumulative_rent_usd == D("13.559589041")


def test_running_session_costed_live(book: Ledger) -> None:
    # November to the fixed now: the running t4 (24 h x 0.50 = 12.00) + 2 h of the spanning one
    r = build_report(book, "2026-11")
    assert r.total_usd == D("14.00")
    assert r.gpu_hours == D(26)
    assert r.running_sessions == 1 and r.sessions == 2
    assert r.spot.sessions_known == 0 and r.idle.sessions_known == 0
    assert "spot savings vs on-demand  unknown" in render_table(r)
    assert r.change_pct is not None and r.change_usd == D("14.00") - D("9.559589041")


def test_empty_month(ledger: Ledger) -> None:
    r = build_report(ledger, "2020-01")
    assert r.total_usd == 0 and r.change_pct is None and r.by_gpu == ()
    assert "$0.00" in render_table(r) and "n/a" in render_table(r)


def test_people_formats_round_the_same_numbers(book: Ledger) -> None:
    r = _oct(book)
    table, md, page = render_table(r), render_markdown(r), render_html(r)
    for text in (table, md, page):
        for shown in ("$9.56", "22.0", "$9.40", "$0.11", "$0.05", "$3.26", "$0.54",
                      "$4.80", "$4.16", "$6.80", "$2.76", "$5.56", "+139.0%", "$4.00",
                      "WATCH", "$13.56"):
            assert shown in text, (shown, text[:300])
    assert "1, costing $0.60 and 2.0 h of work" in table
    assert "| t4 | $4.16 | 12.0 | 2 |" in md
    assert "<td>a10g</td><td>$4.80</td><td>8.0</td><td>1</td>" in page
    assert "unknown" in table  # the spot session without an on-demand price


def test_people_formats_show_break_even_use(book: Ledger) -> None:
    r = _oct(book)
    assert r.advice is not None and r.advice.breakeven_hours_per_month is not None
    shown = f"{r.advice.breakeven_hours_per_month.quantize(D('0.1'), rounding=ROUND_HALF_UP)} GPU-hours/month"
    assert re.search(rf"\nbreak-even use +{re.escape(shown)}\n", render_table(r))
    assert f"| break-even use | {shown} |" in render_markdown(r)
    assert f"<td>break-even use</td><td>{shown}</td>" in render_html(r)


def test_a_drop_is_shown_sign_first(book: Ledger) -> None:
    # December: nothing yet (the clock is at 2026-11-15); November had 14.00.
    r = build_report(book, "2026-12")
    assert r.change_usd == D("-14.00")
    for text in (render_table(r), render_markdown(r), render_html(r)):
        assert "-$14.00 (-100.0%) from $14.00" in text
        assert "$-" not in text


def test_csv_and_json_exact(book: Ledger) -> None:
    r = _oct(book)
    rows = dict(line.split(",", 1) for line in render_csv(r).splitlines()[1:]
                if not line.startswith("advice.months") and not line.startswith("advice.reason"))
    assert rows["total_usd"] == "9.559589041"
    assert rows["by_gpu[t4].usd"] == "4.159589041"
    assert rows["idle.idle_usd"] == "0.53989726025"
    assert rows["previous.change_pct"] == "138.989726025"
    assert rows["spot.sessions_unknown"] == "1"
    data = json.loads(to_json(report_dict(r)))
    assert data["total_usd"] == "9.559589041"
    assert D(data["spot"]["savings_usd"]) == D("3.26")
    assert data["interruptions"] == {"count": 1, "usd": "0.6", "hours": "2"}
    assert data["by_market"][0] == {"key": "on-demand", "usd": "6.8", "gpu_hours": "10",
                                    "sessions": 2}
    assert data["owned"]["running_usd"] == "0.5"
    assert data["advice"]["verdict"] == "watch"


def test_cli_json_both_databases(book: Ledger, db_url: str, cli_on) -> None:
    result = cli_on(db_url)("report", "--month", MONTH, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["month"] == MONTH and data["total_usd"] == "9.559589041"
    assert data["gpu_hours"] == "22" and data["idle"]["idle_usd"] == "0.53989726025"
    assert set(data) >= {"by_gpu", "by_provider", "by_market", "by_job", "spot", "interruptions",
                         "idle", "owned", "previous", "advice"}


@pytest.mark.parametrize("fmt,needle", [("table", "total rent                 $9.56"),
                                        ("markdown", "| total rent | $9.56 |"),
                                        ("csv", "total_usd,9.559589041"),
                                        ("html", "<td>total rent</td><td>$9.56</td>")])
def test_cli_formats_to_file(sqlite_book: str, tmp_path, fmt: str, needle: str, cli_on) -> None:
    out = tmp_path / f"r.{fmt}"
    result = cli_on(sqlite_book)("report", "--month", MONTH, "--format", fmt, "--output", str(out))
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert needle in text
    if fmt == "html":
        assert 'src="data:image/png;base64,' in text


def test_cli_bad_input(cli) -> None:
    bad = cli("report", "--month", "2026-13")
    assert bad.exit_code == 2 and "write it like 2026-10" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    plot = cli("report", "--month", "2026-10", "--plot", "chart.gif")
    assert plot.exit_code == 2 and "FILE.png or FILE.svg" in plot.stderr
    send = cli("report", "--month", "2026-10", "--send")
    assert send.exit_code == 2 and "[report] channel" in send.stderr
    assert "Traceback" not in bad.stderr + plot.stderr + send.stderr


def test_unknown_gpu_speed_keeps_the_money(sqlite_db: str, cli_on) -> None:
    from datetime import UTC, datetime

    from ledger.book import NewSession
    from ledger.catalogue import DEFAULT_RULES
    from ledger.db import open_engine

    Ledger(open_engine(sqlite_db)).record_session(NewSession(
        "runpod", "h100", datetime(2026, 10, 1, tzinfo=UTC), D("2.50"),
        end_at=datetime(2026, 10, 1, 2, tzinfo=UTC)), DEFAULT_RULES)
    run = cli_on(sqlite_db)
    table = run("report", "--month", MONTH)
    assert table.exit_code == 0, table.stderr
    assert "total rent                 $5.00" in table.stdout
    assert "no training speed is known for GPU 'h100'" in table.stdout
    data = json.loads(run("report", "--month", MONTH, "--format", "json").stdout)
    assert data["advice"] is None and "[speeds] h100" in data["advice_error"]
    html = run("report", "--month", MONTH, "--format", "html")
    assert html.exit_code == 0 and "warning: no chart:" in html.stderr
    plot = run("report", "--month", MONTH, "--plot", "x.png")
    assert plot.exit_code == 2 and "[speeds] h100" in plot.stderr
