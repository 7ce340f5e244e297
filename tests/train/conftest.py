"""Fixtures for the end-to-end train tests: synthetic ground truth, a config, a real sshd."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import Sshd

from jobs.htr.synth import synth


@pytest.fixture(scope="session")
def tiny_gt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """80 synthetic lines (PAGE pages and pairs), made once per test session."""
    out = tmp_path_factory.mktemp("gt") / "gt"
    synth(out, 80, seed=3)
    return out


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sshd]:
    """A real OpenSSH server on 127.0.0.1: the `ssh` provider's machine."""
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.kill()


def ssh_config(path: Path, server: Sshd, workdir: Path) -> Path:
    """A config file with [hosts.box] pointing at the loopback sshd, its host key pinned."""
    path.write_text(
        "[hosts.box]\n"
        f'host = "{server.host}"\nport = {server.port}\nuser = "{server.user}"\n'
        f'key_path = "{server.client_key_path}"\nhost_key = "{server.host_public_key}"\n'
        f'gpu = "rtx3060"\nwatts = "230"\npython = "{sys.executable}"\nworkdir = "{workdir}"\n'
    )
    return path
