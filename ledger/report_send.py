"""Mailing the monthly report: HTML body, the table as the text part, the chart attached.

The channel is an email channel of `[alerts.channels]` named by `[report] channel`
(docs/reports.md); `mail_channel` checks it before any work is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ledger.errors import ConfigError

if TYPE_CHECKING:
    from ledger.alerts.config import AlertsSettings, EmailChannel, ReportSettings
    from ledger.report import MonthlyReport


class MailSettings(Protocol):
    """What mailing needs from the launcher's Settings."""

    @property
    def alerts(self) -> AlertsSettings: ...

    @property
    def report(self) -> ReportSettings: ...


def mail_channel(settings: MailSettings) -> EmailChannel:
    """The email channel the report is mailed on, or ConfigError naming the fix."""
    from ledger.alerts.config import EmailChannel

    name = settings.report.channel
    if name is None:
        raise ConfigError("no channel to mail the report on",
                          "set [report] channel to an email channel of [alerts.channels]")
    channel = settings.alerts.channel(name)
    if not isinstance(channel, EmailChannel):
        raise ConfigError(f"[report] channel {name!r} is a {channel.type} channel",
                          "name an email channel in report.channel")
    return channel


def send_report(settings: MailSettings, report: MonthlyReport,
                chart_png: bytes | None) -> list[str]:
    """Mail the report (HTML body, text alternative, chart attached); returns the recipients."""
    from ledger import report_formats as rf
    from ledger.alerts.channels import Attachment, Message, send_email

    channel = mail_channel(settings)
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
