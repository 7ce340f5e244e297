"""A real OpenSSH server on 127.0.0.1 for tests: its own host key, one client key, no PAM.

`Sshd(root)` writes a config, keys and authorized_keys under `root` and runs
`sshd -D -e -f <cfg>` as the current user (root or not) on a free port. Readiness is the SSH
banner on the port, never a sleep. The listener can be stopped, killed and restarted on the same
port with the same host key, so a client that pinned the key can reconnect; `drop_sessions()`
kills the per-connection processes (what a network drop looks like to the box) while the
listener keeps running.

Used by tests/ssh and by the end-to-end train tests: `[aws] ssh_targets` points an "instance"
at this server, started with the job's host key (`Sshd(root, host_private_key=...)`), the job's
login key authorised (`authorize()`), and `[aws] ssh_user` set to `Sshd.user` (sshd runs as the
current user and can only log that user in). If sshd is missing the tests skip, except under CI=true where they
fail: CI must install openssh-server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from launcher.ssh.client import PinnedHostKey, SshTarget

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")
SFTP_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/libexec/sftp-server",  # macOS, Alpine
    "/usr/lib/ssh/sftp-server",  # Arch
)


def find_sshd() -> tuple[str, str] | None:
    """Paths of sshd and sftp-server, or None when this machine has no OpenSSH server."""
    sshd = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), shutil.which("sshd"))
    sftp = next((p for p in SFTP_CANDIDATES if os.access(p, os.X_OK)), None)
    if sshd is None or sftp is None:
        return None
    return sshd, sftp


def require_sshd() -> tuple[str, str]:
    """sshd and sftp-server, or skip the test (fail it under CI=true: CI must have them)."""
    found = find_sshd()
    if found is None:
        message = "OpenSSH server not installed (apt-get install -y openssh-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def new_ed25519(path: Path, comment: str) -> str:
    """Write an OpenSSH ed25519 private key (0600) and .pub; return "ssh-ed25519 AAAA..."."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    _write_private(path, private)
    path.with_suffix(".pub").write_text(f"{public} {comment}\n")
    return public


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _public_of(private_openssh: str) -> str:
    key = serialization.load_ssh_private_key(private_openssh.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `condition` every 20 ms until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.02)


def kill_pid_file(pid_file: Path) -> None:
    """Test clean-up: SIGKILL the process group a detached job wrote to `pid_file` (if any)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sshd:
    """One sshd listener under `root`; see the module docstring."""

    host = "127.0.0.1"

    def __init__(self, root: Path, port: int | None = None, host_private_key: str | None = None) -> None:
        self.sshd_path, self.sftp_path = require_sshd()
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = _current_user()
        self.host_key_path = root / "ssh_host_ed25519_key"
        if host_private_key is None:
            self.host_public_key = new_ed25519(self.host_key_path, "test-host")
        else:  # a key injected "at boot", as the AWS user-data does
            _write_private(self.host_key_path, host_private_key.encode())
            self.host_public_key = _public_of(host_private_key)
        self.client_key_path = root / "id_ed25519"
        client_public = new_ed25519(self.client_key_path, "test-client")
        (root / "authorized_keys").write_text(client_public + "\n")
        self.log_path = root / "sshd.log"
        self.config_path = root / "sshd_config"
        self.config_path.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "StrictModes no",  # tmp folders are not root-owned 0755
            "UsePAM no",  # PAM needs root and a service file; plain key auth is what we test
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            f"Subsystem sftp {self.sftp_path}",
            "LogLevel VERBOSE",
        ]
        return "\n".join(lines) + "\n"

    @property
    def running(self) -> bool:
        """Whether the listener process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout_s: float = 10.0) -> None:
        """Start the listener (on the same port as before) and, by default, wait for its banner."""
        if self.running:
            return
        if os.geteuid() == 0:
            # sshd run as root insists on its privilege-separation directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.sshd_path, "-D", "-e", "-f", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Block until the port answers with an SSH banner; fail with sshd's log if it died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.proc.returncode}):\n{self.log()}")
            if _banner(self.host, self.port).startswith(b"SSH-2.0"):
                return
            time.sleep(0.02)
        raise RuntimeError(f"sshd not ready on {self.host}:{self.port} after {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM the listener and wait (open sessions are separate processes and live on)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the listener."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port with the same host key."""
        self.stop()
        self.start()

    def target(self, **overrides: Any) -> SshTarget:
        """A client target for this server, pinned to its host key, with test-sized timeouts."""
        fields: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user,
            "key_path": self.client_key_path, "host_key": PinnedHostKey.parse(self.host_public_key),
            "connect_timeout_s": 5.0, "deadline_s": 10.0, "keepalive_s": 5,
        }
        fields.update(overrides)
        return SshTarget(**fields)

    def authorize(self, public_key: str) -> None:
        """Also accept this login key ("ssh-ed25519 AAAA... comment"), e.g. a job's own key
        from launcher/ssh/keys.py; sshd reads the file at each login, so no restart is needed."""
        with (self.root / "authorized_keys").open("a") as fh:
            fh.write(public_key.strip() + "\n")

    def session_pids(self) -> list[int]:
        """The per-connection processes this listener forked (its direct children)."""
        if self.proc is None:
            return []
        return _children(self.proc.pid)

    def drop_sessions(self) -> int:
        """SIGKILL every open SSH connection (as a network drop would end it); return how many."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def log(self) -> str:
        """sshd's own log (-e: to stderr, captured here)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _end(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def _banner(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            return sock.recv(64)
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
