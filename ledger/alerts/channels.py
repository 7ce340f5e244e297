"""Delivering a message: console, email (SMTP), webhook (JSON POST), AWS SNS.

Each `send` either returns (delivered) or raises `DeliveryError` with a message that is safe
to store and print: no credentials, no URL secrets. boto3 is imported inside the SNS sender.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TextIO

from ledger.alerts.config import (
    Channel,
    ConsoleChannel,
    EmailChannel,
    SnsChannel,
    WebhookChannel,
)
from ledger.errors import GpuhireError
from ledger.money import json_default


class DeliveryError(GpuhireError):
    """A channel could not deliver; the alert stays pending and is retried at the next check."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "image"
    subtype: str = "png"
    cid: str | None = None  # shown inside the HTML body (<img src="cid:...">), not only attached


@dataclass(frozen=True)
class Message:
    """What a channel delivers: a subject, a plain-text body, optionally HTML and files."""

    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)  # extra JSON for webhooks


def send(channel: Channel, message: Message, *, out: TextIO | None = None,
         recipients: list[str] | None = None) -> None:
    """Deliver `message` on `channel`; raise DeliveryError when it did not arrive."""
    if isinstance(channel, ConsoleChannel):
        stream = out or sys.stdout
        stream.write(f"ALERT {message.subject}\n{message.text}\n")
        stream.flush()
    elif isinstance(channel, EmailChannel):
        send_email(channel, message, recipients)
    elif isinstance(channel, WebhookChannel):
        send_webhook(channel, message)
    elif isinstance(channel, SnsChannel):
        send_sns(channel, message)
    else:  # pragma: no cover - the config models allow no other type
        raise DeliveryError(f"no sender for channel type {type(channel).__name__}")


def _secret(variable: str | None, what: str) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise DeliveryError(f"{what} variable {variable} is not set",
                            f"export {variable} before running gpuhire")
    return value


def build_email(channel: EmailChannel, message: Message,
                recipients: list[str] | None = None) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = channel.sender
    mail["To"] = ", ".join(recipients or channel.to)
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
        html_part = mail.get_body(("html",))
        for item in message.attachments:
            if item.cid is not None and html_part is not None:
                html_part.add_related(item.content, maintype=item.maintype,
                                      subtype=item.subtype, cid=f"<{item.cid}>")
    for item in message.attachments:
        mail.add_attachment(item.content, maintype=item.maintype, subtype=item.subtype,
                            filename=item.filename)
    return mail


def send_email(channel: EmailChannel, message: Message,
               recipients: list[str] | None = None) -> None:
    """SMTP with STARTTLS (default), implicit TLS (`ssl`) or none (a relay on loopback)."""
    user = _secret(channel.username_env, "SMTP user")
    password = _secret(channel.password_env, "SMTP password")
    port = channel.port or {"starttls": 587, "ssl": 465, "none": 25}[channel.security]
    mail = build_email(channel, message, recipients)
    context = ssl.create_default_context(cafile=channel.ca_file)
    try:
        smtp: smtplib.SMTP
        if channel.security == "ssl":
            smtp = smtplib.SMTP_SSL(channel.host, port, timeout=channel.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(channel.host, port, timeout=channel.timeout_s)
        with smtp:
            if channel.security == "starttls":
                smtp.starttls(context=context)
            if user is not None and password is not None:
                smtp.login(user, password)
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        # str(exc) of smtplib never holds the password; keep only the class and the reason.
        raise DeliveryError(f"SMTP {channel.host}:{port}: {type(exc).__name__}: {exc}") from None


def webhook_payload(message: Message) -> dict[str, Any]:
    """The JSON body: Slack reads `text`; other receivers get the fields too."""
    return {"text": f"*{message.subject}*\n{message.text}", "subject": message.subject,
            **message.fields}


def send_webhook(channel: WebhookChannel, message: Message) -> None:
    url = channel.url or _secret(channel.url_env, "webhook URL")
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise DeliveryError("the webhook URL must start with http:// or https://")
    body = json.dumps(webhook_payload(message), default=json_default).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    where = url.split("?")[0] if channel.url else f"${channel.url_env}"  # env URLs are secrets
    try:
        with urllib.request.urlopen(request, timeout=channel.timeout_s) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook {where}: HTTP {exc.code}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise DeliveryError(f"webhook {where}: {type(exc).__name__}: {exc}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook {where}: HTTP {status}")


def send_sns(channel: SnsChannel, message: Message) -> None:
    import boto3
    import botocore.exceptions

    region = channel.region or channel.topic_arn.split(":")[3]
    try:
        session = boto3.Session(profile_name=channel.profile, region_name=region)
        client = session.client("sns")
        # SNS subjects: at most 100 ASCII characters, no newlines.
        subject = message.subject.encode("ascii", "replace").decode()[:100].replace("\n", " ")
        client.publish(TopicArn=channel.topic_arn, Subject=subject, Message=message.text)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise DeliveryError(f"SNS {channel.topic_arn}: {exc}") from None
