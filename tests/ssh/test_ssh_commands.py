"""Detached jobs, tailing, heartbeats and signals over a real SSH connection that drops."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sshd import Sshd, kill_pid_file, wait_for

from launcher.errors import SshError
from launcher.ssh.client import Ssh


def test_detached_job_survives_a_dropped_connection(ssh: Ssh, sshd: Sshd, tmp_path: Path) -> None:
    log, pid_file = tmp_path / "job" / "log", tmp_path / "job" / "pid"
    ticker = ["sh", "-c", 'while true; do echo "tick $GREETING"; sleep 0.05; done']
    pid = ssh.start_detached(ticker, str(log), str(pid_file), env={"GREETING": "it's me"}, cwd=str(tmp_path))
    try:
        assert int(pid_file.read_text()) == pid
        wait_for(lambda: log.exists() and log.stat().st_size > 0)
        assert log.read_text().splitlines()[0] == "tick it's me"
        assert os.getsid(pid) == pid  # its own session: not tied to the SSH session's fate

        # The box's side of the connection dies (network drop), then the client's transport too.
        assert sshd.drop_sessions() >= 1
        transport = ssh._client.get_transport() if ssh._client else None
        assert transport is not None
        transport.close()
        size_at_drop = log.stat().st_size
        ssh.reconnect()

        assert ssh.is_running(str(pid_file))
        wait_for(lambda: log.stat().st_size > size_at_drop)  # still writing
        assert ssh.kill(str(pid_file), signal.SIGTERM)
        wait_for(lambda: not ssh.is_running(str(pid_file)))
    finally:
        kill_pid_file(pid_file)


def test_kill_group_reaches_the_shells_children(ssh: Ssh, tmp_path: Path) -> None:
    pid_file = str(tmp_path / "pid")
    child_pid = tmp_path / "child"
    pid = ssh.start_detached(f"sleep 30 & echo $! > {child_pid}; wait", str(tmp_path / "log"), pid_file)
    wait_for(child_pid.exists)
    wait_for(lambda: child_pid.read_text().strip().isdigit())
    child = int(child_pid.read_text())
    assert ssh.kill(pid_file, signal.SIGTERM, group=True)
    wait_for(lambda: not ssh.is_running(pid_file))
    wait_for(lambda: not _alive(child))
    assert not _alive(pid)


def test_is_running_and_kill_without_a_pid_file(ssh: Ssh, tmp_path: Path) -> None:
    assert not ssh.is_running(str(tmp_path / "none"))
    assert not ssh.kill(str(tmp_path / "none"))


def test_start_detached_rejects_bad_env_names(ssh: Ssh, tmp_path: Path) -> None:
    with pytest.raises(SshError, match="bad environment variable name"):
        ssh.start_detached(["true"], str(tmp_path / "l"), str(tmp_path / "p"), env={"A B": "x"})


def test_tail_across_reconnects_loses_no_bytes(ssh: Ssh, sshd: Sshd, tmp_path: Path) -> None:
    events, pid_file = tmp_path / "events.jsonl", str(tmp_path / "writer.pid")
    # 300 JSON lines, a pause every 20 so that reads, drops and writes interleave.
    writer = (
        'i=0; while [ $i -lt 300 ]; do echo "{\\"n\\": $i}" >> events.jsonl; i=$((i+1)); '
        '[ $((i % 10)) -eq 0 ] && sleep 0.1; done; touch done'
    )
    assert ssh.tail(str(events), 0) == (b"", 0)  # not there yet: nothing, offset kept
    ssh.start_detached(writer, str(tmp_path / "w.log"), pid_file, cwd=str(tmp_path))
    got, offset, calls = bytearray(), 0, 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = ssh.exists(str(tmp_path / "done"))
        chunk, offset = ssh.tail(str(events), offset, max_bytes=700, whole_lines=True)
        got += chunk
        calls += 1
        if calls % 2 == 0:
            sshd.drop_sessions()  # the link drops between reads: the next call reconnects
            wait_for(lambda: not ssh.connected, 5)
        if done and not chunk:
            break
    lines = got.decode().splitlines()
    assert lines == [f'{{"n": {i}}}' for i in range(300)]
    assert offset == events.stat().st_size
    assert ssh.connects > 2


def test_tail_of_a_replaced_file_starts_over(ssh: Ssh, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert ssh.tail(str(path), 4) == (b"456789", 10)
    path.write_bytes(b"abc")
    assert ssh.tail(str(path), 10) == (b"abc", 3)
    assert ssh.tail(str(path), 0, whole_lines=True) == (b"", 0)


def test_touch_is_the_heartbeat(ssh: Ssh, tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    ssh.touch(str(beat))
    assert beat.exists()
    os.utime(beat, (1_000_000, 1_000_000))
    ssh.touch(str(beat))
    assert time.time() - beat.stat().st_mtime < 60
    assert ssh.exists(str(beat)) and not ssh.exists(str(tmp_path / "other"))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_tail_whole_lines_never_stalls_on_a_line_longer_than_max_bytes(ssh: Ssh, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100 + b"\nab")
    assert ssh.tail(str(path), 0, max_bytes=40, whole_lines=True) == (b"x" * 40, 40)
    assert ssh.tail(str(path), 80, max_bytes=40, whole_lines=True) == (b"x" * 20 + b"\n", 101)
    assert ssh.tail(str(path), 101, max_bytes=40, whole_lines=True) == (b"", 101)
