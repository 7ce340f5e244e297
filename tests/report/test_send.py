"""`gpuhire report --send`: a real SMTP server on loopback receives the HTML report and the chart."""

from __future__ import annotations

import io
import socket
import threading
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from PIL import Image


class _Inbox:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.rcpt: list[list[str]] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.cond:
            self.raw.append(envelope.original_content)
            self.rcpt.append(list(envelope.rcpt_tos))
            self.cond.notify_all()
        return "250 OK"


def test_report_send(sqlite_book: str, tmp_path: Path, cli_on) -> None:
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = tmp_path / "config.toml"
        config.write_text(f"""
[report]
channel = "mail"
recipients = ["boss@example.org", "me@example.org"]
[alerts.channels.mail]
type = "email"
host = "127.0.0.1"
port = {port}
security = "none"
sender = "gpuhire@example.org"
to = ["ops@example.org"]
""")
        result = cli_on(sqlite_book, config)("report", "--month", "2026-10", "--send")
        assert result.exit_code == 0, result.stderr
        assert "mailed the 2026-10 report to boss@example.org, me@example.org" in result.stderr
        with inbox.cond:
            inbox.cond.wait_for(lambda: inbox.raw, 10)
    finally:
        controller.stop()
    mail = message_from_bytes(inbox.raw[0], policy=policy.default)
    assert inbox.rcpt[0] == ["boss@example.org", "me@example.org"]
    assert str(mail["Subject"]).strip() == "[gpuhire] gpuhire report 2026-10: $9.56 rent, 22.0 GPU-h"
    html = mail.get_body(("html",)).get_content()
    # the chart shows inside the mail (a related part the HTML points at) and is attached
    assert "<td>total rent</td><td>$9.56</td>" in html and 'src="cid:chart-2026-10@gpuhire"' in html
    related = [p for p in mail.walk() if p["Content-ID"] == "<chart-2026-10@gpuhire>"]
    assert len(related) == 1 and related[0].get_content_type() == "image/png"
    assert "total rent                 $9.56" in mail.get_body(("plain",)).get_content()
    [chart] = [p for p in mail.walk() if p.get_filename()]
    assert chart.get_filename() == "rent-vs-owning-2026-10.png"
    assert Image.open(io.BytesIO(chart.get_content())).format == "PNG"
