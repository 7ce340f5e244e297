"""Nothing waits forever: a box that stops answering without closing TCP (frozen with SIGSTOP,
as a box that lost power or its network looks from here) fails the call in flight with an
SshError within the configured bound, and an SFTP server that hangs fails its request within
`io_timeout_s` (or is retried on a fresh connection)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sshd import Sshd

from launcher.errors import SshError
from launcher.ssh.client import Ssh

KEEPALIVE_S, DEAD_AFTER_S, CONNECT_S = 0.5, 1.5, 1.0
SLACK_S = 2.0  # thread wake-ups on a busy 2-core machine


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's per-connection processes and what they run)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


Freeze = Callable[[list[int]], None]


@pytest.fixture
def freeze() -> Iterator[Freeze]:
    """SIGSTOP processes; every one is sent SIGCONT at the end, whatever the test did."""
    stopped: list[int] = []

    def stop(pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    yield stop
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _whole_box(sshd: Sshd) -> list[int]:
    assert sshd.proc is not None
    sessions = _descendants(sshd.proc.pid)
    assert sessions, "no per-connection sshd process to freeze"
    return [sshd.proc.pid, *sessions]  # the listener too: a reconnect finds no answer either


def test_a_frozen_box_fails_a_running_command_within_the_bound(sshd: Sshd, freeze: Freeze) -> None:
    target = sshd.target(keepalive_s=KEEPALIVE_S, dead_after_s=DEAD_AFTER_S,
                         connect_timeout_s=CONNECT_S, retries=0)
    frozen_at: list[float] = []

    def freeze_now() -> None:
        freeze(_whole_box(sshd))
        frozen_at.append(time.monotonic())

    with Ssh(target) as ssh:
        assert ssh.run("echo up").stdout == b"up\n"
        threading.Timer(0.5, freeze_now).start()  # while the command below runs
        with pytest.raises(SshError) as err:
            ssh.run("sleep 60", timeout_s=120)  # without the watch: 120 s, or the kernel's minutes
        elapsed = time.monotonic() - frozen_at[0]
    assert "the box stopped answering (no reply to keepalives for 1.5 s); it may be gone" in str(err.value)
    assert elapsed < KEEPALIVE_S + DEAD_AFTER_S + SLACK_S, elapsed


def test_a_frozen_box_fails_an_sftp_read_within_the_bound_retry_included(sshd: Sshd, tmp_path: Path,
                                                                          freeze: Freeze) -> None:
    remote = tmp_path / "train-0.log"
    remote.write_text("epoch 1\n")
    target = sshd.target(keepalive_s=KEEPALIVE_S, dead_after_s=DEAD_AFTER_S, io_timeout_s=30.0,
                         connect_timeout_s=CONNECT_S, retries=1)
    with Ssh(target) as ssh:
        assert ssh.tail(str(remote), 0) == (b"epoch 1\n", 8)  # SFTP is open
        freeze(_whole_box(sshd))
        started = time.monotonic()
        with pytest.raises(SshError) as err:
            ssh.tail(str(remote), 0)
        elapsed = time.monotonic() - started
    # the watch gives the link up, one retry finds the listener frozen too (no banner)
    assert f"cannot reach {target.name}" in str(err.value)
    bound = KEEPALIVE_S + DEAD_AFTER_S + 0.5 + 3 * CONNECT_S  # back-off at most 0.25 s here
    assert elapsed < bound + SLACK_S, elapsed


def test_a_hung_sftp_server_times_out_and_a_retry_reads_on_a_new_connection(
        sshd: Sshd, tmp_path: Path, freeze: Freeze) -> None:
    remote = tmp_path / "train-0.log"
    remote.write_text("epoch 1\n")
    io_s = 1.0
    with Ssh(sshd.target(io_timeout_s=io_s, keepalive_s=KEEPALIVE_S, retries=0)) as ssh:
        ssh.tail(str(remote), 0)
        assert sshd.proc is not None
        servers = [p for p in _descendants(sshd.proc.pid) if _comm(p) == "sftp-server"]
        assert len(servers) == 1
        freeze(servers)  # the box answers keepalives; only its SFTP server hangs
        started = time.monotonic()
        with pytest.raises(SshError, match=rf"reading {remote} on .*: no answer for 1 s"):
            ssh.tail(str(remote), 0)
        assert time.monotonic() - started < io_s + SLACK_S
        assert ssh.run("echo alive").stdout == b"alive\n"  # the connection itself is fine

    with Ssh(sshd.target(io_timeout_s=io_s, keepalive_s=KEEPALIVE_S, retries=1)) as ssh:
        ssh.tail(str(remote), 0)
        assert sshd.proc is not None
        fresh = [p for p in _descendants(sshd.proc.pid) if _comm(p) == "sftp-server" and p not in servers]
        assert len(fresh) == 1
        freeze(fresh)
        remote.write_text("epoch 1\nepoch 2\n")
        assert ssh.tail(str(remote), 8) == (b"epoch 2\n", 16)  # read again on a fresh connection
        assert ssh.connects == 2
