"""Fixtures for the SSH tests: a real sshd on 127.0.0.1 and a client pinned to its host key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import Sshd

from launcher.ssh import PinnedHostKey, Ssh, SshTarget


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running OpenSSH server on a free loopback port, stopped at the end."""
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.kill()


def target_for(server: Sshd, **overrides: object) -> SshTarget:
    """An SshTarget for `server`, pinned to its host key, with test-sized timeouts."""
    fields: dict[str, object] = {
        "host": server.host, "port": server.port, "user": server.user,
        "key_path": server.client_key_path, "host_key": PinnedHostKey.parse(server.host_public_key),
        "connect_timeout_s": 5.0, "deadline_s": 10.0, "keepalive_s": 5,
    }
    fields.update(overrides)
    return SshTarget(**fields)  # type: ignore[arg-type]


@pytest.fixture
def target(sshd: Sshd) -> SshTarget:
    """The pinned target of the `sshd` fixture."""
    return target_for(sshd)


@pytest.fixture
def ssh(target: SshTarget) -> Iterator[Ssh]:
    """A connected client."""
    with Ssh(target) as client:
        yield client
