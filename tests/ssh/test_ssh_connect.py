"""Connecting: the pinned host key, refusals, patient retries while the box boots, key files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paramiko
import pytest
from sshd import Sshd, free_port

from launcher.errors import SshError
from launcher.ssh.client import PinnedHostKey, Ssh, SshTarget
from launcher.ssh.hostkeys import new_host_key
from launcher.ssh.trust import RefuseUnpinned


def test_pinned_key_connects_and_runs(ssh: Ssh) -> None:
    result = ssh.run("echo out; echo err >&2; exit 3")
    assert result == (3, b"out\n", b"err\n")
    assert ssh.connected and ssh.connects == 1


def test_wrong_pinned_key_is_refused_and_nothing_runs(sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    wrong = new_host_key().pinned
    client = Ssh(sshd.target(host_key=wrong))
    with pytest.raises(SshError) as err:
        client.run(f"touch {marker}")
    message = str(err.value)
    assert f"host key for 127.0.0.1:{sshd.port} does not match the pinned key" in message
    assert "someone may be intercepting, or the instance was replaced" in message
    assert "do not connect; run `gpuhire gc`" in message
    assert PinnedHostKey.parse(sshd.host_public_key).fingerprint() in message  # what we were shown
    assert not marker.exists()
    # The client stopped before authenticating: sshd never accepted a login.
    assert "Accepted" not in sshd.log()
    assert not client.connected


def test_wrong_key_is_retried_only_within_its_grace(sshd: Sshd) -> None:
    client = Ssh(sshd.target(host_key=new_host_key().pinned, host_key_grace_s=0.5))
    started = time.monotonic()
    with pytest.raises(SshError, match=r"does not match the pinned key .*gave up after"):
        client.connect()
    assert time.monotonic() - started < 5


def test_unknown_host_is_never_auto_accepted(sshd: Sshd) -> None:
    # The policy the client installs, on a raw paramiko client that holds no pinned key.
    raw = paramiko.SSHClient()
    raw.set_missing_host_key_policy(RefuseUnpinned())
    with pytest.raises(SshError, match="no key is pinned for it"):
        raw.connect(sshd.host, sshd.port, username=sshd.user, key_filename=str(sshd.client_key_path),
                    allow_agent=False, look_for_keys=False, timeout=5)
    raw.close()
    assert "Accepted" not in sshd.log()
    # And a target cannot be made without a pinned key at all.
    with pytest.raises(SshError, match="unknown hosts are never accepted"):
        SshTarget(sshd.host, sshd.port, sshd.user, sshd.client_key_path, None)  # type: ignore[arg-type]


def test_retries_while_the_server_boots(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "late")
    timer = threading.Timer(1.0, server.start)
    timer.start()
    try:
        started = time.monotonic()
        with Ssh(server.target(deadline_s=15.0)) as client:
            assert time.monotonic() - started >= 0.9  # it really was down when we began
            assert client.run("echo up").stdout == b"up\n"
    finally:
        timer.join()
        server.kill()


def test_gives_up_at_the_deadline_when_nothing_comes_up(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "never", port=free_port())  # configured, never started
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    started = time.monotonic()
    with pytest.raises(SshError) as err:
        Ssh(server.target(deadline_s=1.5), sleep=sleep).connect()
    elapsed = time.monotonic() - started
    assert 1.4 <= elapsed < 4
    assert f"cannot reach {server.user}@127.0.0.1:{server.port}" in err.value.message
    assert "gave up after" in err.value.message
    assert "port 22 is open" in (err.value.fix or "")
    # Exponential back-off with jitter: the first wait is at most 0.25 s, later ones longer.
    assert len(sleeps) >= 2 and sleeps[0] <= 0.25 and max(sleeps) > 0.25


def test_refused_login_is_bounded_by_auth_grace(sshd: Sshd, tmp_path: Path) -> None:
    from sshd import new_ed25519

    stranger = tmp_path / "stranger"
    new_ed25519(stranger, "not-authorized")
    with pytest.raises(SshError, match="refused the key"):
        Ssh(sshd.target(key_path=stranger, auth_grace_s=0.0)).connect()


def test_group_readable_private_key_is_refused(sshd: Sshd) -> None:
    sshd.client_key_path.chmod(0o644)
    with pytest.raises(SshError) as err:
        Ssh(sshd.target())
    assert "readable by others (mode 0644)" in err.value.message
    assert err.value.fix == f"run `chmod 600 {sshd.client_key_path}`"


def test_missing_private_key_names_the_fix(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(SshError, match="does not exist"):
        Ssh(sshd.target(key_path=tmp_path / "nope"))


def test_reconnects_after_a_drop_with_the_same_pin(ssh: Ssh, sshd: Sshd) -> None:
    assert sshd.drop_sessions() >= 1
    with pytest.raises(SshError, match="the next call reconnects"):
        ssh.run("echo hi")
    assert ssh.run("echo again").stdout == b"again\n"
    assert ssh.connects == 2


def test_run_timeout(ssh: Ssh) -> None:
    with pytest.raises(SshError, match=r"ran past 0\.5 s"):
        ssh.run("sleep 5", timeout_s=0.5)
    assert ssh.run("echo still fine").exit_status == 0


def test_run_reads_big_stdout_and_stderr_together(ssh: Ssh) -> None:
    # Both streams past any window size at once: reading one while the other fills must not hang.
    result = ssh.run("head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2; echo end", timeout_s=30)
    assert (result.exit_status, len(result.stdout), len(result.stderr)) == (0, 3000004, 2000000)


def test_without_auto_reconnect_a_drop_is_reported(sshd: Sshd) -> None:
    client = Ssh(sshd.target(), auto_reconnect=False).connect()
    sshd.drop_sessions()
    with pytest.raises(SshError):
        client.run("true")
    with pytest.raises(SshError, match="dropped"):
        client.run("true")
    assert client.reconnect().run("echo back").stdout == b"back\n"
    client.close()


def test_a_drop_during_run_raises_at_once(ssh: Ssh) -> None:
    started = time.monotonic()
    with pytest.raises(SshError, match="the connection dropped"):
        ssh.run("kill -9 $PPID; sleep 5", timeout_s=30)  # the box's end of this connection dies
    assert time.monotonic() - started < 5
    assert ssh.run("echo back").stdout == b"back\n"


def test_a_command_killed_by_a_signal_has_status_minus_one(ssh: Ssh) -> None:
    assert ssh.run("kill -9 $$").exit_status == -1


def test_a_target_without_an_address_or_with_a_bad_port_is_refused(sshd: Sshd) -> None:
    with pytest.raises(SshError, match="no address yet"):
        sshd.target(host="")
    with pytest.raises(SshError, match="not a TCP port"):
        sshd.target(port=70000)
