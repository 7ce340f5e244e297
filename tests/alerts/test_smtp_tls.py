"""Email over STARTTLS and implicit TLS with login, against aiosmtpd with a throwaway CA.

The user name and password come from environment variables named in the channel config; the
server checks them, so a wrong or missing variable fails the send.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.alerts.channels import DeliveryError, Message, send
from ledger.alerts.config import EmailChannel


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cert(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Inbox:
    def __init__(self) -> None:
        self.subjects: list[str] = []
        self.logins: list[str] = []
        self.cond = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.original_content.decode()
        subject = next(line for line in text.splitlines() if line.startswith("Subject:"))
        with self.cond:
            self.subjects.append(subject.removeprefix("Subject: "))
            self.cond.notify_all()
        return "250 OK"

    def check(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"robot", b"s3cret")
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture(params=["starttls", "ssl"])
def tls_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, Path, _Inbox]]:
    from aiosmtpd.controller import Controller

    cert, key = _cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = _port()
    kwargs: dict[str, Any] = {"authenticator": inbox.check, "auth_require_tls": True}
    if request.param == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    else:
        # aiosmtpd only counts STARTTLS as TLS for AUTH; the implicit-TLS socket is TLS anyway
        kwargs.update(ssl_context=context, auth_require_tls=False)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield request.param, port, cert, inbox
    finally:
        controller.stop()


def test_tls_login_with_env_credentials(tls_server, monkeypatch: pytest.MonkeyPatch) -> None:
    security, port, ca, inbox = tls_server
    channel = EmailChannel.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "security": security,
        "ca_file": str(ca), "username_env": "GPUHIRE_T_USER", "password_env": "GPUHIRE_T_PASS",
        "sender": "gpuhire@example.org", "to": ["ops@example.org"], "timeout_s": 5})
    monkeypatch.setenv("GPUHIRE_T_USER", "robot")
    monkeypatch.setenv("GPUHIRE_T_PASS", "wrong")
    # (aiosmtpd leaves a refused login hanging until the client times out: keep that short)
    with pytest.raises(DeliveryError) as info:
        send(channel.model_copy(update={"timeout_s": 1}), Message("nope", "t"))
    assert "wrong" not in str(info.value)  # the password never shows in messages
    monkeypatch.setenv("GPUHIRE_T_PASS", "s3cret")
    send(channel, Message(f"[gpuhire] over {security}", "budget passed"))
    with inbox.cond:
        inbox.cond.wait_for(lambda: inbox.subjects, 10)
    assert inbox.subjects == [f"[gpuhire] over {security}"] and inbox.logins == ["robot"]


def test_untrusted_certificate_refused(tls_server) -> None:
    security, port, _, inbox = tls_server
    channel = EmailChannel.model_validate({
        "type": "email", "host": "127.0.0.1", "port": port, "security": security,
        "sender": "a@example.org", "to": ["b@example.org"], "timeout_s": 5})
    with pytest.raises(DeliveryError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        send(channel, Message("s", "t"))
    assert inbox.subjects == []
