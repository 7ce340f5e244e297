"""Channels against real receivers: SMTP (aiosmtpd), HTTP on loopback, SNS -> SQS in moto."""

from __future__ import annotations

import json
import socket

import pytest

from ledger.alerts.channels import DeliveryError, Message, build_email, send
from ledger.alerts.config import EmailChannel, SnsChannel, WebhookChannel


def email(port: int, **extra: object) -> EmailChannel:
    return EmailChannel.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "security": "none",
        "sender": "gpuhire@example.org", "to": ["ops@example.org"], **extra})


def test_email_arrives(smtp) -> None:
    inbox, port = smtp
    send(email(port), Message("[gpuhire] budget: 80%", "November rent passed 80% of $40.00"))
    [msg] = inbox.wait_for(1)
    assert msg["Subject"] == "[gpuhire] budget: 80%"
    assert msg["From"] == "gpuhire@example.org" and msg["To"] == "ops@example.org"
    assert "November rent passed 80% of $40.00" in msg.get_content()


def test_email_credentials_from_environment_only(smtp, monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = smtp
    channel = email(port, username_env="GPUHIRE_T_SMTP_USER", password_env="GPUHIRE_T_SMTP_PASS")
    with pytest.raises(DeliveryError, match="GPUHIRE_T_SMTP_USER is not set"):
        send(channel, Message("s", "t"))
    assert "secret" not in channel.model_dump_json()
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        email(port, password_env="hunter2 secret!")


def test_email_with_html_and_attachment() -> None:
    mail = build_email(email(25), Message("s", "plain", html="<p>rich</p>",
                                          attachments=()), ["a@example.org", "b@example.org"])
    assert mail["To"] == "a@example.org, b@example.org"
    assert mail.get_body(("html",)).get_content().strip() == "<p>rich</p>"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smtp_down_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError, match=r"SMTP 127\.0\.0\.1"):
        send(email(_closed_port(), timeout_s=2), Message("s", "t"))


def test_webhook_json(webhook) -> None:
    hooks, port = webhook
    channel = WebhookChannel(type="webhook", url=f"http://127.0.0.1:{port}/hook")
    send(channel, Message("[gpuhire] idle", "GPU below 10%", fields={"session": 4}))
    [body] = hooks.wait_for(1)
    assert body["text"] == "*[gpuhire] idle*\nGPU below 10%"  # Slack reads `text`
    assert body["subject"] == "[gpuhire] idle" and body["session"] == 4


def test_webhook_url_from_environment(webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    hooks, port = webhook
    monkeypatch.setenv("GPUHIRE_T_HOOK", f"http://127.0.0.1:{port}/secret-path")
    send(WebhookChannel(type="webhook", url_env="GPUHIRE_T_HOOK"), Message("s", "t"))
    assert hooks.wait_for(1)[0]["subject"] == "s"
    monkeypatch.setenv("GPUHIRE_T_HOOK", "http://127.0.0.1:1/secret-path")
    with pytest.raises(DeliveryError) as info:
        send(WebhookChannel(type="webhook", url_env="GPUHIRE_T_HOOK", timeout_s=2),
             Message("s", "t"))
    assert "secret-path" not in str(info.value)  # the URL is a secret: never in messages


def test_sns_to_sqs(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        topic = sns.create_topic(Name="gpuhire-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs",
                      Endpoint=arn["Attributes"]["QueueArn"])
        send(SnsChannel(type="sns", topic_arn=topic), Message("[gpuhire] budget", "over 80%"))
        got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        envelope = json.loads(got[0]["Body"])
        assert envelope["Subject"] == "[gpuhire] budget"
        assert envelope["Message"] == "over 80%"


def test_console_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.alerts.config import CONSOLE

    send(CONSOLE, Message("subject line", "body text"))
    assert capsys.readouterr().out == "ALERT subject line\nbody text\n"


