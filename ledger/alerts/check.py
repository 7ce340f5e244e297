"""Running the checks: evaluate every rule, send each alert once per rule, period and channel.

The `alert_sends` table remembers every (rule, period, channel): `sent` rows are never sent
again; `pending`/`failed` rows are retried at every check from their stored subject and body,
even when the rule no longer fires, so a channel that was down loses nothing. Channels are
independent: one that fails is recorded and the others still deliver.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ledger.alerts.channels import DeliveryError, Message, send
from ledger.alerts.rules import Alert, SettingsLike, evaluate
from ledger.book import Ledger
from ledger.errors import GpuhireError
from ledger.models import AlertSend
from ledger.money import json_default

CLAIM_TIMEOUT = timedelta(minutes=10)  # far longer than any channel's timeout


@dataclass(frozen=True)
class Delivery:
    rule: str
    period: str
    channel: str
    # sent | failed | already-sent | busy (another check is sending it) | dry-run (would be
    # sent) | dry-run-retry (recorded earlier, not delivered yet: the next check retries it)
    status: str
    error: str = ""  # failed: why; dry-run-retry: why the last try failed


@dataclass(frozen=True)
class CheckResult:
    """What one check fired and what happened on every channel."""

    fired: list[Alert] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # rules that could not be evaluated

    @property
    def failed(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status == "failed"]


def _find(ledger: Ledger, rule: str, period: str, channel: str) -> AlertSend | None:
    with ledger.reading() as db:
        stmt = select(AlertSend).where(
            AlertSend.rule == rule, AlertSend.period == period, AlertSend.channel == channel
        )
        return db.exec(stmt).first()


def _claim(ledger: Ledger, alert: Alert, channel: str) -> AlertSend:
    """The row for (rule, period, channel), created pending if new."""
    row = _find(ledger, alert.rule, alert.period, channel)
    if row is not None:
        return row
    try:
        with ledger.writing() as db:
            row = AlertSend(rule=alert.rule, period=alert.period, channel=channel,
                            subject=alert.subject, body=alert.text,
                            message_fields=json_fields(alert.fields), created_at=ledger.now())
            db.add(row)
        return row
    except IntegrityError:  # another check created it a moment ago
        found = _find(ledger, alert.rule, alert.period, channel)
        assert found is not None
        return found


def _take(ledger: Ledger, row_id: int | None) -> bool:
    """Claim a row for sending; of two checks at the same moment, only one wins.

    While a row is `sending`, `sent_at` holds the claim time; a claim older than
    CLAIM_TIMEOUT (a check that died mid-send) may be taken again, so nothing is lost.
    """
    now = ledger.now()
    free = col(AlertSend.status).in_(("pending", "failed")) | (
        (col(AlertSend.status) == "sending") & (col(AlertSend.sent_at) < now - CLAIM_TIMEOUT)
    )
    stmt = (update(AlertSend).where(col(AlertSend.id) == row_id).where(free)
            .values(status="sending", sent_at=now))
    with ledger.writing() as db:
        return db.connection().execute(stmt).rowcount == 1


def _deliver(ledger: Ledger, settings: SettingsLike, row: AlertSend, message: Message,
             out: TextIO | None) -> Delivery:
    if not _take(ledger, row.id):
        return Delivery(row.rule, row.period, row.channel, "busy")
    error = ""
    try:
        send(settings.alerts.channel(row.channel), message, out=out)
    except GpuhireError as exc:  # DeliveryError, or a channel removed from the config
        error = str(exc)
    except Exception as exc:  # a broken channel must never stop the others
        error = f"{type(exc).__name__}: {exc}"
    with ledger.writing() as db:
        stored = db.get(AlertSend, row.id)
        assert stored is not None
        stored.attempts += 1
        if error:
            stored.status, stored.sent_at, stored.last_error = "failed", None, error[:2000]
        else:
            stored.status, stored.sent_at, stored.last_error = "sent", ledger.now(), ""
        db.add(stored)
    return Delivery(row.rule, row.period, row.channel, "failed" if error else "sent", error)


def json_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields as plain JSON values (Decimals as exact strings), as the webhook gets them."""
    loaded: dict[str, Any] = json.loads(json.dumps(fields, default=json_default))
    return loaded


def stored_message(row: AlertSend) -> Message:
    """The message of a stored alert, as first sent: subject, body and fields."""
    return Message(row.subject, row.body, fields=dict(row.message_fields or {}))


def unsent(ledger: Ledger) -> list[AlertSend]:
    """Alerts recorded but not delivered yet (pending, failed or sending), oldest first."""
    with ledger.reading() as db:
        stmt = select(AlertSend).where(AlertSend.status != "sent")
        return list(db.exec(stmt.order_by(col(AlertSend.created_at), col(AlertSend.id))))


def run_checks(ledger: Ledger, settings: SettingsLike, *, dry_run: bool = False,
               out: TextIO | None = None, now: datetime | None = None) -> CheckResult:
    """Evaluate every rule now; send what is new, retry what failed before.

    With `dry_run`, nothing is sent or written: the result says what would be sent, new
    alerts (`dry-run`) and earlier ones still waiting for a retry (`dry-run-retry`).
    """
    moment = now or ledger.now()
    result = CheckResult()
    for rule in settings.alerts.rules:
        try:
            result.fired.extend(evaluate(ledger, rule, settings, moment))
        except GpuhireError as exc:
            result.errors.append(f"rule {rule.name!r}: {exc}")
    done: set[tuple[str, str, str]] = set()
    for row in unsent(ledger):  # first the ones that failed last time: nothing is lost
        if dry_run:
            result.deliveries.append(Delivery(row.rule, row.period, row.channel, "dry-run-retry",
                                              row.last_error))
        else:
            result.deliveries.append(_deliver(ledger, settings, row, stored_message(row), out))
        done.add((row.rule, row.period, row.channel))
    for alert in result.fired:
        for channel in alert.channels:
            key = (alert.rule, alert.period, channel)
            if key in done:
                continue
            done.add(key)
            existing = _find(ledger, *key)
            if existing is not None and existing.status == "sent":
                result.deliveries.append(Delivery(*key, "already-sent"))
            elif dry_run:
                result.deliveries.append(Delivery(*key, "dry-run"))
            else:
                row = _claim(ledger, alert, channel)
                result.deliveries.append(_deliver(ledger, settings, row, stored_message(row), out))
    return result


def check_quietly(ledger: Ledger, settings: SettingsLike, warn: Callable[[str], None]) -> None:
    """Run the checks after a session or job was recorded, when there are rules; whatever
    fails is only a warning line passed to `warn`: what was recorded stays recorded."""
    try:
        if not settings.alerts.rules:
            return
        result = run_checks(ledger, settings)
        for d in result.failed:
            warn(f"warning: alert {d.rule} on {d.channel} not sent (retried at the next "
                 f"check): {d.error}")
        for line in result.errors:
            warn(f"warning: {line}")
    except Exception as exc:  # the session is recorded: an alert problem must not fail it
        warn(f"warning: alert check failed: {exc}")


def summary(result: CheckResult) -> str:
    """One line: what fired and what happened to it."""
    counts: dict[str, int] = {}
    for d in result.deliveries:
        counts[d.status] = counts.get(d.status, 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    return f"{len(result.fired)} alert(s) fired" + (f"; {', '.join(parts)}" if parts else "")


def result_dict(result: CheckResult) -> dict[str, Any]:
    """The stable JSON of `gpuhire alerts check` (docs/json.md)."""
    return {
        "fired": [{"rule": a.rule, "period": a.period, "subject": a.subject, "text": a.text,
                   "channels": list(a.channels)} for a in result.fired],
        "deliveries": [{"rule": d.rule, "period": d.period, "channel": d.channel,
                        "status": d.status, "error": d.error} for d in result.deliveries],
        "errors": result.errors,
    }


def send_dict(row: AlertSend) -> dict[str, Any]:
    """One row of `gpuhire alerts list --format json` (docs/json.md)."""
    return {"rule": row.rule, "period": row.period, "channel": row.channel,
            "status": row.status, "subject": row.subject, "attempts": row.attempts,
            "last_error": row.last_error, "created_at": row.created_at, "sent_at": row.sent_at}


def history(ledger: Ledger, limit: int = 200) -> list[AlertSend]:
    """What fired and when, newest first."""
    with ledger.reading() as db:
        stmt = select(AlertSend).order_by(col(AlertSend.created_at).desc(),
                                          col(AlertSend.id).desc())
        return list(db.exec(stmt.limit(limit)))


def channel_test_message(channel: str) -> Message:
    """The message `gpuhire alerts test CHANNEL` sends."""
    return Message(f"[gpuhire] test message on channel {channel}",
                   f"This is a test of the gpuhire alert channel {channel!r}. It works.",
                   fields={"rule": "test", "channel": channel})


__all__ = ["CheckResult", "Delivery", "DeliveryError", "check_quietly", "history", "result_dict",
           "run_checks", "send_dict", "summary", "unsent"]
