"""Where a job runs, seen from the launcher: put/get files, start detached, tail, signal.

`LocalHost` is this machine (the `local` provider). `SshHost` (launcher/ssh/host.py) is any
machine reached over SSH (the `ssh` provider, and AWS instances). The train flow only talks to
this interface, so the same code drives a laptop run and a spot instance.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class Host(Protocol):
    """The operations the train flow needs on the machine that runs the job."""

    workdir: str  # remote folder the job lives in

    def put(self, local: Path, remote: str) -> None:
        """Copy a file or folder to the host (resumable where the transport allows)."""

    def get(self, remote: str, local: Path) -> None:
        """Copy a file or folder back from the host."""

    def exists(self, remote: str) -> bool: ...

    def start(self, argv: list[str], log: str, pid_file: str, env: dict[str, str]) -> int:
        """Start a detached process that outlives the launcher's connection; return its pid."""

    def running(self, pid_file: str) -> bool: ...

    def tail(self, remote: str, offset: int) -> tuple[bytes, int]:
        """Bytes of `remote` from `offset` on, and the new offset."""

    def signal(self, pid_file: str, sig: int) -> None: ...

    def heartbeat(self, lease_s: float = 0.0) -> None:
        """Tell the box's dead-man switch the launcher is alive (for `lease_s` more seconds:
        a detached job stays up without a launcher, within the box's maximum lifetime)."""

    def reconnect(self, deadline_s: float) -> None:
        """Make sure the link is up, trying for at most `deadline_s` (SshError if it is not):
        a caller that must also watch something else (the provider) tries in short turns."""

    def close(self) -> None: ...


@contextlib.contextmanager
def beating(host: Host, every_s: float) -> Iterator[None]:
    """Touch the host's heartbeat from a thread every `every_s` while the caller works.

    Shipping data (SFTP, or the box fetching it from S3) can take longer than the box's
    dead-man switch waits. The heartbeat goes over its own exec channel, so it runs beside a
    transfer (tests/ssh/test_ssh_transfer.py). A failed beat is not the caller's problem:
    the transfer in the main thread notices a dead link itself.
    """
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                host.heartbeat()
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=beat, name="gpuhire-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)  # a beat stuck on a dead link must not hold us up


class LocalHost:
    """This machine: files are copied, the job is a detached local process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = str(workdir)
        workdir.mkdir(parents=True, exist_ok=True)

    def _path(self, remote: str) -> Path:
        p = Path(remote)
        return p if p.is_absolute() else Path(self.workdir) / p

    def put(self, local: Path, remote: str) -> None:
        target = self._path(remote)
        if local.resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, dirs_exist_ok=True)
        else:
            shutil.copy2(local, target)

    def get(self, remote: str, local: Path) -> None:
        source = self._path(remote)
        if source.resolve() == local.resolve():
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
        else:
            tmp = local.with_name(local.name + ".part")
            shutil.copy2(source, tmp)
            os.replace(tmp, local)

    def exists(self, remote: str) -> bool:
        return self._path(remote).exists()

    def start(self, argv: list[str], log: str, pid_file: str, env: dict[str, str]) -> int:
        log_path = self._path(log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env={**os.environ, **env}, start_new_session=True,
            )
        self._path(pid_file).write_text(str(proc.pid))
        self._child = proc  # reaped in running(); a detached job outlives us otherwise
        return proc.pid

    def _pid(self, pid_file: str) -> int | None:
        try:
            return int(self._path(pid_file).read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self, pid_file: str) -> bool:
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is not None:
            return False
        pid = self._pid(pid_file)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(pid)

    def tail(self, remote: str, offset: int) -> tuple[bytes, int]:
        path = self._path(remote)
        if not path.exists():
            return b"", offset
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return data, offset + len(data)

    def signal(self, pid_file: str, sig: int = signal.SIGTERM) -> None:
        pid = self._pid(pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def heartbeat(self, lease_s: float = 0.0) -> None:
        """Nothing to keep alive: this machine is not rented."""

    def reconnect(self, deadline_s: float) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to close."""


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
