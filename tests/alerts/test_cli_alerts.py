"""`gpuhire alerts check|list|test`, the check after `ledger add`, and bad config, via the CLI.

The CLI runs on the real clock, so the ledger holds one closed session at the start of the
current month: 1 h at 600.00 = 600.00 of rent this month, whatever day the test runs.
"""

from __future__ import annotations

import json
import socket
from decimal import Decimal as D
from pathlib import Path

import pytest

from ledger.book import Ledger, NewSession
from ledger.catalogue import DEFAULT_RULES
from ledger.db import open_engine
from ledger.timeutil import month_of, month_start, utcnow

RULE = """
[[alerts.rules]]
name = "budget"
type = "monthly_budget"
budget_usd = "1000"
levels_pct = [50, 80]
projected = false
channels = {channels}
"""
MAIL = """
[alerts.channels.mail]
type = "email"
host = "127.0.0.1"
port = {port}
security = "none"
sender = "gpuhire@example.org"
to = ["ops@example.org"]
timeout_s = 3
"""
HOOK = """
[alerts.channels.hook]
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
timeout_s = 3
"""


def _spend_600(url: str) -> str:
    start = month_start(month_of(utcnow()))
    Ledger(open_engine(url)).record_session(
        NewSession("runpod", "t4", start, D("600"), end_at=start.replace(hour=1)), DEFAULT_RULES)
    return month_of(utcnow())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_email_and_webhook_once_per_period(db_url: str, smtp, webhook, write_config, cli_on) -> None:
    inbox, smtp_port = smtp
    hooks, hook_port = webhook
    month = _spend_600(db_url)
    config = write_config(RULE.format(channels='["mail", "hook"]') + MAIL.format(port=smtp_port)
                          + HOOK.format(port=hook_port))
    run = cli_on(db_url, config)
    first = run("alerts", "check")
    assert first.exit_code == 0, first.stderr
    assert "1 alert(s) fired; 2 sent" in first.stdout
    [mail] = inbox.wait_for(1)
    # (a long subject is folded on the wire; unfolding may leave the fold's space in front)
    assert str(mail["Subject"]).strip() == (
        f"[gpuhire] budget: {month} rent $600.00 passed 50% of the $1,000.00 budget")
    assert "passed 50% of the $1,000.00 budget" in mail.get_content()
    [body] = hooks.wait_for(1)
    assert body["text"].startswith("*[gpuhire] budget:") and body["period"] == f"{month}:50%"
    assert body["spend_usd"] == "600"
    # the second check sends nothing new
    second = run("alerts", "check")
    assert second.exit_code == 0 and "2 already-sent" in second.stdout
    assert len(inbox.messages) == 1 and len(hooks.bodies) == 1
    listed = json.loads(run("alerts", "list", "--format", "json").stdout)
    assert sorted((r["channel"], r["status"], r["attempts"]) for r in listed) == [
        ("hook", "sent", 1), ("mail", "sent", 1)]


def test_down_channel_retried_nothing_lost(sqlite_db: str, smtp, write_config, cli_on,
                                           start_webhook) -> None:
    inbox, smtp_port = smtp
    hook_port = _closed_port()
    month = _spend_600(sqlite_db)
    config = write_config(RULE.format(channels='["hook", "mail"]') + MAIL.format(port=smtp_port)
                          + HOOK.format(port=hook_port))
    run = cli_on(sqlite_db, config)
    first = run("alerts", "check")
    assert first.exit_code == 1
    assert "1 failed, 1 sent" in first.stdout
    assert "hook failed, retried at the next check" in first.stderr
    assert len(inbox.wait_for(1)) == 1  # the broken webhook did not stop the mail
    listed = {r["channel"]: r for r in json.loads(run("alerts", "list", "--format", "json").stdout)}
    assert listed["hook"]["status"] == "failed" and listed["hook"]["sent_at"] is None
    # The table, piped, keeps each alert on one line (rich would fold at 80 columns).
    table = run("alerts", "list", env={"COLUMNS": ""}).stdout.splitlines()
    [hook_row] = [line for line in table if " hook " in line]
    assert "failed" in hook_row and listed["hook"]["subject"] in hook_row
    # A dry run lists the pending retry (and sends nothing, changes nothing).
    dry = run("alerts", "check", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"would retry budget [{month}:50%] on hook (last try: webhook" in dry.stdout
    data = json.loads(run("alerts", "check", "--dry-run", "--format", "json").stdout)
    assert [(d["channel"], d["status"]) for d in data["deliveries"]] == [
        ("hook", "dry-run-retry"), ("mail", "already-sent")]
    again = {r["channel"]: r for r in json.loads(run("alerts", "list", "--format", "json").stdout)}
    assert again["hook"]["attempts"] == 1 and again["hook"]["status"] == "failed"
    server, hooks = start_webhook(hook_port)  # the receiver comes back
    try:
        second = run("alerts", "check")
        assert second.exit_code == 0, second.stderr
        [body] = hooks.wait_for(1)
        assert "passed 50%" in body["text"]
        # The retry carries the alert's fields, as a first send would.
        assert body["rule"] == "budget" and body["type"] == "monthly_budget"
        assert body["period"] == f"{month}:50%" and body["spend_usd"] == "600"
        assert len(inbox.messages) == 1  # mail is not sent twice
        third = run("alerts", "check")
        assert len(hooks.bodies) == 1 and "2 already-sent" in third.stdout
    finally:
        server.shutdown()
        server.server_close()


def test_dry_run_and_test_channel(sqlite_db: str, smtp, write_config, cli_on) -> None:
    inbox, smtp_port = smtp
    month = _spend_600(sqlite_db)
    run = cli_on(sqlite_db, write_config(RULE.format(channels='["mail"]')
                                         + MAIL.format(port=smtp_port)))
    dry = run("alerts", "check", "--dry-run")
    assert dry.exit_code == 0 and f"would send budget [{month}:50%] on mail" in dry.stdout
    assert inbox.messages == [] and json.loads(run("alerts", "list", "--format", "json").stdout) == []
    data = json.loads(run("alerts", "check", "--dry-run", "--format", "json").stdout)
    assert [(d["rule"], d["period"], d["channel"], d["status"]) for d in data["deliveries"]] == [
        ("budget", f"{month}:50%", "mail", "dry-run")]
    assert data["fired"][0]["channels"] == ["mail"] and data["errors"] == []
    test = run("alerts", "test", "mail")
    assert test.exit_code == 0 and "sent a test message on mail" in test.stdout
    assert inbox.wait_for(1)[0]["Subject"] == "[gpuhire] test message on channel mail"
    console = run("alerts", "test", "console")
    assert console.exit_code == 0 and "ALERT [gpuhire] test message" in console.stdout
    unknown = run("alerts", "test", "pager")
    assert unknown.exit_code == 2 and "unknown channel 'pager'" in unknown.stderr


def test_ledger_add_runs_the_checks(sqlite_db: str, write_config, cli_on) -> None:
    config = write_config(RULE.format(channels='["console", "hook"]')
                          + HOOK.format(port=_closed_port()))
    start = month_start(month_of(utcnow())).isoformat()
    end = month_start(month_of(utcnow())).replace(hour=1).isoformat()
    added = cli_on(sqlite_db, config)("ledger", "add", "--provider", "runpod", "--gpu", "t4",
                                      "--start", start, "--end", end, "--usd-per-hour", "600")
    assert added.exit_code == 0, added.stderr  # a broken channel never fails the recording
    assert "recorded session 1" in added.stdout
    assert "ALERT [gpuhire] budget:" in added.stdout
    assert "warning: alert budget on hook not sent (retried at the next check)" in added.stderr


@pytest.mark.parametrize("text,key", [
    ('[[alerts.rules]]\nname = "x"\ntype = "weekly_budget"\n', "'alerts.rules.0.type'"),
    ('[[alerts.rules]]\nname = "x"\ntype = "monthly_budget"\nbudget_usd = "-5"\n',
     "'alerts.rules.0.budget_usd'"),
    ('[[alerts.rules]]\nname = "x"\ntype = "monthly_budget"\nbudget_usd = "5"\n'
     'levels_pct = [0, 80]\n', "'alerts.rules.0.levels_pct'"),
    ('[[alerts.rules]]\nname = "x"\ntype = "idle_gpu"\nbelow_pct = 150\nminutes = 5\n',
     "'alerts.rules.0.below_pct'"),
    ('[[alerts.rules]]\nname = "x"\ntype = "long_running"\nhours = 3\nchannels = ["slack"]\n',
     "'alerts.rules.0.channels'"),
    ('[alerts.channels.m]\ntype = "pigeon"\n', "'alerts.channels.m.type'"),
])
def test_bad_config_one_line_naming_the_key(cli, write_config, text: str, key: str) -> None:
    result = type(cli)(cli.db, write_config(text))("alerts", "check")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config key ") and key in lines[0]
    assert "Traceback" not in result.stderr


def test_ledger_import_runs_the_checks(sqlite_db: str, tmp_path: Path, write_config,
                                       cli_on) -> None:
    config = write_config(RULE.format(channels='["console"]'))
    start = month_start(month_of(utcnow()))
    csv = tmp_path / "s.csv"
    csv.write_text("provider,gpu,start,end,usd_per_hour\n"
                   f"runpod,t4,{start.isoformat()},{start.replace(hour=1).isoformat()},900\n")
    result = cli_on(sqlite_db, config)("ledger", "import", str(csv))
    assert result.exit_code == 0, result.stderr
    assert "imported 1 session(s)" in result.stdout
    assert result.stdout.count("ALERT [gpuhire] budget:") == 2  # 900 passes 50 % and 80 %
