"""`gpuhire report`: the monthly report in five formats, the rent-vs-owning chart, and mail."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from launcher import completion
from launcher.context import app_context
from ledger.errors import GpuhireError, InputError
from ledger.timeutil import last_complete_month, parse_month


class ReportFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


def report(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(
        metavar="YYYY-MM", help="The month (default: the last complete month).")] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="table, markdown, csv, json or html")]
    = ReportFormat.table,
    output: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Write the report to this file.")] = None,
    plot: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also draw rent vs owning to FILE.png or FILE.svg.")
    ] = None,
    send: Annotated[bool, typer.Option("--send", help="Mail it to [report] recipients.")] = False,
    card: Annotated[str | None, typer.Option(
        metavar="CARD", autocompletion=completion.cards,
        help="Card for the buy signal and the chart (see `gpuhire cards`).")] = None,
) -> None:
    """Monthly report: rent by GPU, provider, market and job; savings; idle GPU; buy signal.

    Example:  gpuhire report --month 2026-10 --format html --output october.html
    """
    from ledger.plot import report_chart
    from ledger.report import build_report
    from ledger.report_formats import render
    from ledger.report_send import mail_channel, send_report

    app = app_context(ctx)
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise InputError(f"--plot {plot} is neither .png nor .svg", "name the file FILE.png or FILE.svg")
    for flag, path in (("--plot", plot), ("--output", output)):  # before any work is done
        if path is not None:
            _check_writable(flag, path)
    if send:
        mail_channel(app.settings)
    chosen = parse_month(month) if month else last_complete_month(app.ledger.now())
    settings = app.settings
    chosen_card = settings.card(card or settings.report.card)
    params = settings.ownership_params()
    result = build_report(app.ledger, chosen, chosen_card, params, compare=settings.compare)
    no_plot: GpuhireError | None = None
    try:
        chart_png = report_chart(app.ledger, chosen, chosen_card, params, plot=plot,
                                 needed=fmt is ReportFormat.html or send,
                                 warn=lambda m: typer.echo(m, err=True))
    except GpuhireError as exc:  # only with --plot: the report still stands, then one line
        if plot is None:
            raise
        no_plot, chart_png = _no_plot(plot, exc), None
    text = render(result, fmt, chart_png)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write {output}: {exc.strerror}", "check the path") from None
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)
    if no_plot is not None:  # nothing is mailed: the user asked for a chart that failed
        raise no_plot
    if send:
        to = send_report(settings, result, chart_png)
        typer.echo(f"mailed the {chosen} report to {', '.join(to)}", err=True)


def _no_plot(plot: Path, exc: GpuhireError) -> GpuhireError:
    """Why --plot drew nothing (e.g. a rented GPU of unknown speed: owning cannot be costed),
    as one line with the same fix and exit code, raised after the report is out."""
    error = GpuhireError(f"the report is complete, but no chart was drawn to {plot}: "
                         f"{exc.message}", exc.fix)
    error.exit_code = exc.exit_code
    return error


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
