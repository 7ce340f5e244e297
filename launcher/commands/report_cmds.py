"""`gpuhire report`: the monthly report in five formats, the rent-vs-owning chart, and mail."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from launcher.context import AppContext, app_context
from launcher.output import to_json
from ledger.errors import ConfigError, GpuhireError, InputError
from ledger.timeutil import last_complete_month, parse_month

if TYPE_CHECKING:
    from ledger.alerts.config import EmailChannel
    from ledger.plot import OwnershipSeries
    from ledger.report import MonthlyReport


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


def _series(app: AppContext, report: MonthlyReport, card: str | None) -> OwnershipSeries:
    from ledger.plot import series_from_ledger

    settings = app.settings
    return series_from_ledger(app.ledger, report.month, settings.card(card),
                              settings.ownership_params())


def _chart(series: OwnershipSeries, fmt: str = "png", path: Path | None = None) -> bytes:
    from ledger.plot import render_chart

    return render_chart(series, path, fmt)


def render(report: MonthlyReport, fmt: ReportFormat, chart_png: bytes | None) -> str:
    """The report as text in one format (HTML inlines the chart)."""
    from ledger import report_formats as rf

    if fmt is ReportFormat.json:
        return to_json(rf.report_dict(report)) + "\n"
    if fmt is ReportFormat.html:
        return rf.render_html(report, chart_png)
    renderers = {ReportFormat.table: rf.render_table, ReportFormat.markdown: rf.render_markdown,
                 ReportFormat.csv: rf.render_csv}
    return renderers[fmt](report)


def mail_channel(app: AppContext) -> EmailChannel:
    """The email channel the report is mailed on, checked before any work is done."""
    from ledger.alerts.config import EmailChannel

    settings = app.settings
    name = settings.report.channel
    if name is None:
        raise ConfigError("no channel to mail the report on",
                          "set [report] channel to an email channel of [alerts.channels]")
    channel = settings.alerts.channel(name)
    if not isinstance(channel, EmailChannel):
        raise ConfigError(f"[report] channel {name!r} is a {channel.type} channel",
                          "name an email channel in report.channel")
    return channel


def send_report(app: AppContext, report: MonthlyReport, chart_png: bytes | None) -> list[str]:
    """Mail the report (HTML body, text alternative, chart attached); returns the recipients."""
    from ledger import report_formats as rf
    from ledger.alerts.channels import Attachment, Message, send_email

    settings = app.settings
    channel = mail_channel(app)
    recipients = list(settings.report.recipients) or list(channel.to)
    cid = f"chart-{report.month}@gpuhire"
    message = Message(
        subject=f"{settings.report.subject_prefix} {rf.title(report)}".strip(),
        text=rf.render_table(report),
        html=rf.render_html(report, chart_src=f"cid:{cid}" if chart_png else None),
        attachments=(Attachment(f"rent-vs-owning-{report.month}.png", chart_png, cid=cid),)
        if chart_png else (),
    )
    send_email(channel, message, recipients)
    return recipients


def report(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(help="YYYY-MM (default: the last complete month).")] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="table, markdown, csv, json or html")]
    = ReportFormat.table,
    output: Annotated[Path | None, typer.Option(help="Write the report to this file.")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw rent vs owning to FILE.png or FILE.svg.")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Mail it to [report] recipients.")] = False,
    card: Annotated[str | None, typer.Option(help="Card for the buy signal and the chart.")] = None,
) -> None:
    """Monthly report: rent by GPU, provider, market and job; savings; idle GPU; buy signal.

    Example:  gpuhire report --month 2026-10 --format html --output october.html
    """
    from ledger.report import build_report

    app = app_context(ctx)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise InputError(f"--plot {plot} is neither .png nor .svg", "name the file FILE.png or FILE.svg")
    for flag, path in (("--plot", plot), ("--output", output)):  # before any work is done
        if path is not None:
            _check_writable(flag, path)
    if send:
        mail_channel(app)
    chosen = parse_month(month) if month else last_complete_month(app.ledger.now())
    card_name = card or app.settings.report.card
    settings = app.settings
    result = build_report(app.ledger, chosen, settings.card(card_name), settings.ownership_params())
    chart_png: bytes | None = None
    if plot is not None:  # asked for: a chart that cannot be drawn is an error
        series = _series(app, result, card_name)
        _chart(series, path=plot)
        chart_png = _chart(series, "png")
    elif fmt is ReportFormat.html or send:
        try:
            chart_png = _chart(_series(app, result, card_name), "png")
        except GpuhireError as exc:  # the report stands without its picture
            typer.echo(f"warning: no chart: {exc}", err=True)
    text = render(result, fmt, chart_png)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}", "check the path") from None
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)
    if send:
        to = send_report(app, result, chart_png)
        typer.echo(f"mailed the {chosen} report to {', '.join(to)}", err=True)


def _check_writable(flag: str, path: Path) -> None:
    """A file the report can be written to: its folder exists, and it is not a folder."""
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {flag} {path}: the folder {folder} does not exist",
                         "create the folder first, or give another path")
    if path.is_dir():
        raise InputError(f"cannot write {flag} {path}: it is a folder", "give a file name")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
