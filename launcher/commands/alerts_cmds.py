"""`gpuhire alerts check|list|test`; the quiet check after a job is ledger.alerts.check."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from launcher.context import app_context
from launcher.output import ListFormat, iso, print_json, print_table

alerts_app = typer.Typer(
    help="Threshold alerts: budgets, idle GPUs, machines left running, the buy signal.\n\n"
    "Example:  gpuhire alerts check --dry-run",
    no_args_is_help=True,
)


@alerts_app.command("check")
def check(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send nothing.")]
    = False,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """Evaluate every rule now; send new alerts once per rule, period and channel.

    Exits 1 when a channel failed (it is retried at the next check).

    Example:  gpuhire alerts check
    """
    from ledger.alerts.check import result_dict, run_checks, summary

    app = app_context(ctx)
    result = run_checks(app.ledger, app.settings, dry_run=dry_run,
                        out=sys.stderr if fmt is ListFormat.json else sys.stdout)
    if fmt is ListFormat.json:
        print_json(result_dict(result))
    else:
        for d in result.deliveries:
            if d.status == "dry-run":
                typer.echo(f"would send {d.rule} [{d.period}] on {d.channel}")
            elif d.status == "dry-run-retry":
                last = f" (last try: {d.error})" if d.error else ""
                typer.echo(f"would retry {d.rule} [{d.period}] on {d.channel}{last}")
        typer.echo(summary(result))
    for line in result.errors:
        typer.echo(f"warning: {line}", err=True)
    for d in result.failed:
        typer.echo(f"warning: {d.rule} [{d.period}] on {d.channel} failed, retried at the next "
                   f"check: {d.error}", err=True)
    if result.failed or result.errors:
        raise typer.Exit(1)


@alerts_app.command("list")
def list_alerts(
    ctx: typer.Context,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """Show what fired and when, newest first, with each channel's delivery state.

    Example:  gpuhire alerts list --format json
    """
    from ledger.alerts.check import history, send_dict

    data = [send_dict(r) for r in history(app_context(ctx).ledger)]
    if fmt is ListFormat.json:
        print_json(data)
        return
    print_table(f"{len(data)} alert send(s)",
                ["fired", "rule", "period", "channel", "status", "sent", "tries", "subject"],
                [[iso(d["created_at"]), d["rule"], d["period"], d["channel"], d["status"],
                  iso(d["sent_at"]), d["attempts"], d["subject"]] for d in data])


@alerts_app.command("test")
def test_channel(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(
        metavar="CHANNEL", help="A channel of [alerts.channels], or console.")],
) -> None:
    """Send a test message on one channel.

    Example:  gpuhire alerts test team-mail
    """
    from ledger.alerts.channels import send
    from ledger.alerts.check import channel_test_message

    settings = app_context(ctx).settings
    send(settings.alerts.channel(channel), channel_test_message(channel))
    typer.echo(f"sent a test message on {channel}")


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
