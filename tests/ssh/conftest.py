"""Fixtures for the SSH tests: a real sshd on 127.0.0.1 and a client pinned to its host key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import Sshd

from launcher.ssh.client import Ssh, SshTarget


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running OpenSSH server on a free loopback port, stopped at the end."""
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def target(sshd: Sshd) -> SshTarget:
    """The pinned target of the `sshd` fixture."""
    return sshd.target()


@pytest.fixture
def ssh(target: SshTarget) -> Iterator[Ssh]:
    """A connected client."""
    with Ssh(target) as client:
        yield client
