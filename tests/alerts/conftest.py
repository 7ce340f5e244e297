"""Real receivers on loopback for the alert tests: an SMTP server (aiosmtpd) and an HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """What the SMTP server received: parsed messages, with a wait for the count."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content, policy=policy.default)
        with self._cond:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._cond.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 10) -> list[EmailMessage]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
        return list(self.messages)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (no TLS, no auth): (inbox, port)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Hooks:
    """JSON bodies the webhook server received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def wait_for(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.bodies) >= count, timeout)
        return list(self.bodies)


def _start_webhook(port: int = 0, delay_s: float = 0) -> tuple[ThreadingHTTPServer, Hooks]:
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            if delay_s:
                time.sleep(delay_s)  # a slow receiver: keeps a send in flight
            with hooks.cond:
                hooks.bodies.append(body)
                hooks.cond.notify_all()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hooks


@pytest.fixture
def webhook() -> Iterator[tuple[Hooks, int]]:
    server, hooks = _start_webhook()
    try:
        yield hooks, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def write_config(tmp_path: Path):
    """write_config(text) -> path of a config.toml holding it."""
    def write(text: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli_on(cli):
    """`cli_on(url, config_path)` -> the root conftest's CLI runner on that database."""
    return lambda url, config=None: type(cli)(url, config)


@pytest.fixture
def start_webhook():
    """start_webhook(port) -> (server, hooks): a receiver on a chosen port; the test stops it."""
    return _start_webhook
