"""`gpuhire alerts check|list|test`, and the quiet check after every recorded session."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launcher.context import AppContext, app_context
from launcher.output import ListFormat, iso, print_json, print_table

if TYPE_CHECKING:
    from ledger.alerts.check import CheckResult

alerts_app = typer.Typer(
    help="Threshold alerts: budgets, idle GPUs, machines left running, the buy signal.\n\n"
    "Example:  gpuhire alerts check --dry-run",
    no_args_is_help=True,
)


def _result_dict(result: CheckResult) -> dict[str, Any]:
    return {
        "fired": [{"rule": a.rule, "period": a.period, "subject": a.subject, "text": a.text,
                   "channels": list(a.channels)} for a in result.fired],
        "deliveries": [{"rule": d.rule, "period": d.period, "channel": d.channel,
                        "status": d.status, "error": d.error} for d in result.deliveries],
        "errors": result.errors,
    }


def summary(result: CheckResult) -> str:
    """One line: what fired and what happened to it."""
    counts: dict[str, int] = {}
    for d in result.deliveries:
        counts[d.status] = counts.get(d.status, 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    return f"{len(result.fired)} alert(s) fired" + (f"; {', '.join(parts)}" if parts else "")


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
    from ledger.alerts.check import run_checks

    app = app_context(ctx)
    result = run_checks(app.ledger, app.settings, dry_run=dry_run,
                        out=sys.stderr if fmt is ListFormat.json else sys.stdout)
    if fmt is ListFormat.json:
        print_json(_result_dict(result))
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
    from ledger.alerts.check import history

    rows = history(app_context(ctx).ledger)
    data: list[dict[str, Any]] = [
        {"rule": r.rule, "period": r.period, "channel": r.channel, "status": r.status,
         "subject": r.subject, "attempts": r.attempts, "last_error": r.last_error,
         "created_at": r.created_at, "sent_at": r.sent_at} for r in rows
    ]
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
    channel: Annotated[str, typer.Argument(help="A channel of [alerts.channels], or console.")],
) -> None:
    """Send a test message on one channel.

    Example:  gpuhire alerts test team-mail
    """
    from ledger.alerts.channels import send
    from ledger.alerts.check import channel_test_message

    settings = app_context(ctx).settings
    send(settings.alerts.channel(channel), channel_test_message(channel))
    typer.echo(f"sent a test message on {channel}")


def check_after_recording(app: AppContext) -> None:
    """Run the alert checks after a session was recorded; a failure only prints a warning."""
    try:
        settings = app.settings
        if not settings.alerts.rules:
            return
        from ledger.alerts.check import run_checks

        result = run_checks(app.ledger, settings)
        for d in result.failed:
            typer.echo(f"warning: alert {d.rule} on {d.channel} not sent (retried at the next "
                       f"check): {d.error}", err=True)
        for line in result.errors:
            typer.echo(f"warning: {line}", err=True)
    except Exception as exc:  # the session is recorded: an alert problem must not fail it
        typer.echo(f"warning: alert check failed: {exc}", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
