"""SSH to a rented box: a pinned host key, keepalives, patient connects, detached jobs, resumable copies.

With transfer.py, alive.py and trust.py here, the only modules that import paramiko.

    target = SshTarget(host, 22, "ubuntu", key_path, PinnedHostKey.parse("ssh-ed25519 AAAA..."))
    with Ssh(target) as ssh:            # retries with back-off while the box boots
        ssh.put(Path("data"), "job/data")          # resumes a dropped transfer
        pid = ssh.start_detached(["python3", "-m", "jobs.htr", "train"], "job/log", "job/pid")
        chunk, offset = ssh.tail("job/events.jsonl", 0)

Nothing waits forever (docs/ssh.md): a box silent to keepalives for `dead_after_s` is given up
(launcher/ssh/alive.py), an SFTP request or channel open waits `io_timeout_s`, a command its
`timeout_s`; idempotent calls are retried `retries` times after a drop, with back-off.

Trust: the client knows exactly one host key per target (injected at boot or read from the
console output, launcher/ssh/hostkeys.py) and refuses anything else, including an unknown host:
paramiko's RejectPolicy, never AutoAddPolicy. Every paramiko and socket error leaves this module
as an `SshError` whose fix says what to do. After a dropped connection the next call reconnects
(with the same pinned key) unless `auto_reconnect=False`.
"""

from __future__ import annotations

import contextlib
import errno
import select
import shlex
import signal as signals
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, TypeVar

import paramiko

from launcher.errors import SshError
from launcher.ssh import scripts as ssh_scripts
from launcher.ssh import transfer as ssh_transfer
from launcher.ssh.alive import AliveWatch, backoff_s
from launcher.ssh.hostkeys import PinnedHostKey, SshTarget
from launcher.ssh.transfer import ProgressFn, TransferStats
from launcher.ssh.trust import RefuseUnpinned, load_private_key, pinned_pkey

__all__ = ["PinnedHostKey", "RunResult", "Ssh", "SshTarget", "TransferStats"]

_NETWORK_ERRORS = (OSError, EOFError, paramiko.SSHException)  # socket.timeout is an OSError


T = TypeVar("T")


class RunResult(NamedTuple):
    """What a remote command did."""

    exit_status: int
    stdout: bytes
    stderr: bytes


class _RetryableError(Exception):
    """A connect attempt failed in a way that may pass (box booting); carries the user error."""

    def __init__(self, error: SshError, kind: str) -> None:
        super().__init__(error.message)
        self.error, self.kind = error, kind


class _DroppedError(SshError):
    """The connection died under a call (as opposed to the box refusing it)."""


class Ssh:
    """One SSH connection to one target; see the module docstring."""

    def __init__(self, target: SshTarget, *, auto_reconnect: bool = True,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.target = target
        self.auto_reconnect = auto_reconnect
        self._sleep = sleep
        self._pkey = load_private_key(target.key_path)
        self._host_pkey = pinned_pkey(target.host_key)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._watch: AliveWatch | None = None  # the current connection's (launcher/ssh/alive.py)
        self.connects = 0  # successful connects so far (1 + reconnects)
        self._lock = threading.RLock()  # connect/close/SFTP setup; channels themselves are thread-safe

    # --- connection -----------------------------------------------------------------------

    def __enter__(self) -> Ssh:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """Whether the transport is up (a dropped link shows after a keepalive or a call)."""
        client = self._client  # one read: another thread may close it meanwhile
        transport = client.get_transport() if client else None
        return transport is not None and transport.is_active()

    def connect(self, deadline_s: float | None = None) -> Ssh:
        """Connect, retrying with exponential back-off and jitter until `deadline_s` has passed."""
        with self._lock:
            if self.connected:
                return self
            self.close()
            deadline = time.monotonic() + (self.target.deadline_s if deadline_s is None else deadline_s)
            first_seen: dict[str, float] = {}
            attempt = 0
            while True:
                attempt += 1
                try:
                    self._client = self._connect_once()
                    self.connects += 1
                    return self
                except _RetryableError as retry:
                    now = time.monotonic()
                    since = now - first_seen.setdefault(retry.kind, now)
                    grace = {"auth": self.target.auth_grace_s, "hostkey": self.target.host_key_grace_s}
                    if now >= deadline or since >= grace.get(retry.kind, float("inf")):
                        tries = f" (gave up after {attempt} attempts)" if attempt > 1 else ""
                        raise SshError(retry.error.message + tries, retry.error.fix) from None
                # first retry soon: a port that just opened is the common case
                self._sleep(max(0.0, min(backoff_s(attempt), deadline - time.monotonic())))

    def reconnect(self, deadline_s: float | None = None) -> Ssh:
        """Drop the connection (if any) and connect again to the same pinned host."""
        self.close()
        return self.connect(deadline_s)

    def close(self) -> None:
        """Close the SFTP session and the connection; safe to call twice."""
        with self._lock:
            if self._watch is not None:
                self._watch.stop()
            for thing in (self._sftp, self._client):
                if thing is not None:
                    with contextlib.suppress(*_NETWORK_ERRORS):  # already dead: nothing to close
                        thing.close()
            self._sftp = self._client = None

    def _connect_once(self) -> paramiko.SSHClient:
        t = self.target
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(RefuseUnpinned())
        client.get_host_keys().add(t.known_hosts_name, self._host_pkey.get_name(), self._host_pkey)
        try:
            client.connect(
                t.host, t.port, username=t.user, pkey=self._pkey, timeout=t.connect_timeout_s,
                banner_timeout=t.connect_timeout_s, auth_timeout=t.connect_timeout_s,
                allow_agent=False, look_for_keys=False,  # only the job's key, never the user's own
            )
        except BaseException as exc:
            client.close()
            raise self._classify(exc) from None
        transport = client.get_transport()
        if transport is None:  # connect() returned without a transport: treat as a failed attempt
            raise _RetryableError(SshError(f"no transport to {t.name}", "retry"), "network")
        transport.set_keepalive(max(1, round(t.keepalive_s)))  # NAT state; asks no answer
        self._watch = AliveWatch(transport, t.keepalive_s, t.dead_after_s).start()
        return client

    def _classify(self, exc: BaseException) -> BaseException:
        t = self.target
        if isinstance(exc, paramiko.BadHostKeyException):
            error = SshError(
                f"host key for {t.host}:{t.port} does not match the pinned key (got "
                f"{exc.key.get_name()} {exc.key.fingerprint}, pinned {t.host_key.fingerprint()}); "
                "someone may be intercepting, or the instance was replaced",
                "do not connect; run `gpuhire gc`",
            )
            return _RetryableError(error, "hostkey")
        if isinstance(exc, SshError):
            return exc  # the unpinned-host refusal: never retried
        if isinstance(exc, paramiko.AuthenticationException):
            return _RetryableError(SshError(
                f"{t.name} refused the key {t.key_path}",
                "check the login user and that the key's public half is in the box's authorized_keys",
            ), "auth")
        if isinstance(exc, socket.gaierror):
            fix = "check the host name or the [aws] ssh_targets override"
            return SshError(f"cannot resolve {t.host}: {exc}", fix)
        if isinstance(exc, _NETWORK_ERRORS):
            return _RetryableError(SshError(
                f"cannot reach {t.name}: {exc or type(exc).__name__}",
                "check the box is running and port 22 is open to this machine (security group, firewall)",
            ), "network")
        return exc  # a bug, not a network problem: let it show

    def _ensure(self) -> paramiko.SSHClient:
        with self._lock:  # two threads noticing one drop reconnect once
            if not self.connected:
                if self.connects and not self.auto_reconnect:
                    raise SshError(f"the connection to {self.target.name} dropped", "call reconnect()")
                self.connect()  # first use, or back after a drop: same pinned key, same deadline
            assert self._client is not None
            return self._client

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Map a mid-call failure to SshError (_DroppedError if the link died: the next call reconnects)."""
        try:
            yield
        except SshError:
            raise
        except _NETWORK_ERRORS as exc:
            what = f"{action} on {self.target.name}"
            watch = self._watch
            if watch is not None and watch.dead:
                raise _DroppedError(
                    f"{what}: the box stopped answering (no reply to keepalives for "
                    f"{self.target.dead_after_s:g} s); it may be gone",
                    "check it still runs (`gpuhire status`); the next call reconnects") from None
            if isinstance(exc, TimeoutError):  # socket.timeout: an SFTP request went unanswered
                self._drop_sftp()  # its replies are out of step now: the next call opens another
                raise _DroppedError(f"{what}: no answer for {self.target.io_timeout_s:g} s",
                                    "the box or its SFTP server is stuck; the next call reconnects") from None
            if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EACCES):
                raise SshError(f"{what}: {exc}", "check the remote path") from None
            if self._settled_dropped():
                raise _DroppedError(f"{what} failed: {exc or type(exc).__name__}",
                                    "the connection dropped; the next call reconnects (retry)") from None
            fix = "check the remote path and the box's free disk space"
            raise SshError(f"{what} failed: {exc}", fix) from None

    def _settled_dropped(self) -> bool:
        # paramiko wakes waiting calls a moment before it marks the transport inactive.
        for _ in range(40):
            if not self.connected:
                return True
            time.sleep(0.025)
        return False

    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP session of the current connection (reopened after a reconnect); each of
        its requests waits at most `io_timeout_s` for an answer."""
        with self._lock:
            client = self._ensure()
            if self._sftp is None or self._sftp.sock.closed:
                with self._errors("opening SFTP"):
                    transport = client.get_transport()
                    if transport is None:
                        raise EOFError("connection closed")
                    chan = transport.open_session(timeout=self.target.io_timeout_s)
                    chan.settimeout(self.target.io_timeout_s)  # = sftp.get_channel().settimeout
                    chan.invoke_subsystem("sftp")
                    self._sftp = paramiko.SFTPClient(chan)
            return self._sftp

    def _drop_sftp(self) -> None:
        with self._lock:
            sftp, self._sftp = self._sftp, None
            if sftp is not None:
                with contextlib.suppress(*_NETWORK_ERRORS):
                    sftp.close()

    def _idempotent(self, call: Callable[[], T]) -> T:
        """`call`, retried `retries` times after a dropped connection (back-off, then one short
        reconnect each): only for calls that do the same thing when done twice."""
        for attempt in range(self.target.retries + 1):
            try:
                return call()
            except _DroppedError:
                if attempt == self.target.retries:
                    raise
            self._sleep(backoff_s(attempt + 1))
            self.reconnect(self.target.connect_timeout_s)
        raise AssertionError("unreachable")

    # --- commands -------------------------------------------------------------------------

    def run(self, cmd: str, timeout_s: float = 60.0) -> RunResult:
        """Run `cmd` with the remote user's shell; wait at most `timeout_s` for it to finish.

        The exit status is -1 if the command was killed by a signal. Past the timeout this
        raises, and the command keeps running on the box (no terminal: nothing hangs it up).
        """
        client = self._ensure()
        deadline = time.monotonic() + timeout_s
        out, err = bytearray(), bytearray()
        with self._errors(f"running {cmd[:60]!r}"):
            transport = client.get_transport()
            if transport is None:  # closed by another thread since _ensure()
                raise EOFError("connection closed")
            chan = transport.open_session(timeout=min(timeout_s, self.target.io_timeout_s))
            try:
                chan.exec_command(cmd)
                while not (chan.eof_received or chan.closed) or chan.recv_ready() or chan.recv_stderr_ready():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise SshError(f"{cmd[:60]!r} on {self.target.name} ran past {timeout_s} s",
                                       "raise the timeout, or start it with start_detached()")
                    select.select([chan], [], [], min(left, 1.0))
                    while chan.recv_ready():
                        out += chan.recv(65536)
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                    raise SshError(f"no exit status for {cmd[:60]!r}", "retry")
                if not transport.is_active():  # closed under us: -1 would pass for a signal
                    raise EOFError("connection closed while the command ran")
                return RunResult(chan.recv_exit_status(), bytes(out), bytes(err))
            finally:
                chan.close()

    def start_detached(self, cmd: Sequence[str] | str, log_path: str, pid_path: str, *,
                       env: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
        """Start `cmd` in its own session (setsid + nohup) so an SSH drop never kills it; its pid.

        An argv list is exec'ed, so the pid is the program's own. A string is shell code run by
        `sh -c`; the pid is that shell's (signal its group: `kill(..., group=True)`).
        `env` is added to the box's environment; `cwd` is the folder it starts in.
        """
        script = ssh_scripts.detached(cmd, log_path, pid_path, env, cwd)
        result = self.run(script, timeout_s=30.0)
        pid = result.stdout.decode(errors="replace").strip()
        if result.exit_status != 0 or not pid.isdigit():
            raise SshError(f"could not start {str(cmd)[:60]!r} on {self.target.name}: "
                           f"{result.stderr.decode(errors='replace').strip()[:200]}",
                           "check the remote paths are writable")
        return int(pid)

    def is_running(self, pid_path: str) -> bool:
        """Whether the process named in `pid_path` is alive (a zombie counts as ended)."""
        script = ssh_scripts.running(pid_path)
        return self._idempotent(lambda: self.run(script, timeout_s=30.0)).exit_status == 0

    def kill(self, pid_path: str, sig: int = signals.SIGTERM, *, group: bool = False) -> bool:
        """Send `sig` to the process (or its whole process group); True if it was delivered."""
        script = ssh_scripts.kill(pid_path, sig, group)
        return self.run(script, timeout_s=30.0).exit_status == 0

    # --- files ----------------------------------------------------------------------------

    def tail(self, path: str, offset: int, *, max_bytes: int = 8 << 20,
             whole_lines: bool = False) -> tuple[bytes, int]:
        """Bytes of `path` from `offset` (at most `max_bytes`) and the offset to ask for next.

        A missing file gives no bytes; a file shorter than `offset` was replaced and is read from
        the start. With `whole_lines`, a trailing partial line is left for the next call.
        """
        def read() -> tuple[bytes, int]:
            sftp = self.sftp()
            with self._errors(f"reading {path}"):
                return ssh_transfer.tail(sftp, path, offset, max_bytes, whole_lines)
        return self._idempotent(read)

    def touch(self, path: str) -> None:
        """Set `path`'s mtime to now, creating it if needed: the dead-man switch's heartbeat.

        Its own exec channel, not the SFTP session: safe from a heartbeat thread while the main
        thread copies files.
        """
        result = self._idempotent(lambda: self.run(f"touch -- {shlex.quote(path)}", timeout_s=30.0))
        if result.exit_status != 0:
            why = result.stderr.decode(errors="replace").strip()
            raise SshError(f"cannot touch {path} on {self.target.name}: {why}",
                           "check the heartbeat folder exists and is the login user's")

    def exists(self, path: str) -> bool:
        """Whether `path` exists on the box."""
        def check() -> bool:
            sftp = self.sftp()
            with self._errors(f"checking {path}"):
                return ssh_transfer.remote_stat(sftp, path) is not None
        return self._idempotent(check)

    def sha256(self, path: str, size: int | None = None) -> str | None:
        """sha256 of a remote file (its first `size` bytes if given), computed on the box.

        None if the file is missing or the box has no sha256 tool.
        """
        result = self._idempotent(lambda: self.run(ssh_scripts.sha256(path, size), timeout_s=600.0))
        digest = result.stdout.split(b" ", 1)[0].decode(errors="replace")
        return digest if result.exit_status == 0 and len(digest) == 64 else None

    def put(self, local: Path, remote: str, progress: ProgressFn | None = None, *,
            retries: int = 2) -> TransferStats:
        """Copy a file or tree to the box; resumes after drops (reconnecting up to `retries` times)."""
        return self._transfer("upload", lambda s: ssh_transfer.put_path(
            self.sftp(), local, remote, self.sha256, progress, s), retries)

    def get(self, remote: str, local: Path, progress: ProgressFn | None = None, *,
            retries: int = 2) -> TransferStats:
        """Copy a file or tree from the box; resumes after drops (reconnecting up to `retries` times)."""
        return self._transfer("download", lambda s: ssh_transfer.get_path(
            self.sftp(), remote, local, self.sha256, progress, s), retries)

    def _transfer(self, action: str, step: Callable[[TransferStats], None], retries: int) -> TransferStats:
        stats = TransferStats()
        for attempt in range(retries + 1):
            try:
                with self._errors(action):
                    step(stats)
                return stats
            except _DroppedError:
                if attempt == retries:
                    raise  # a bad path or a hash mismatch is not retried: only drops are
                stats.reconnects += 1
                self.reconnect()
        raise AssertionError("unreachable")
