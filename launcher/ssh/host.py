"""`Host` over SSH: the train flow's files and processes on a remote box (launcher.ssh.client).

Relative paths live under the job's folder on the box (`workdir`). The job runs detached
(setsid + nohup) so a dropped connection never kills it; the client reconnects by itself.
"""

from __future__ import annotations

import shlex
import signal as signals
import time
from pathlib import Path

from launcher.ssh.client import Ssh


class SshHost:
    """A remote box, one job folder on it."""

    def __init__(self, ssh: Ssh, workdir: str, heartbeat_path: str | None = None,
                 pid_mirror: str | None = None) -> None:
        self.ssh = ssh
        self.heartbeat_path = heartbeat_path
        self.pid_mirror = pid_mirror  # where the box's spot-notice watcher looks for the job
        made = ssh.run(f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)} && pwd",
                       timeout_s=30.0)
        self.workdir = made.stdout.decode().strip() or workdir  # absolute: docker -v needs it

    def _path(self, remote: str) -> str:
        return remote if remote.startswith("/") else f"{self.workdir}/{remote}"

    def put(self, local: Path, remote: str) -> None:
        self.ssh.put(local, self._path(remote))

    def get(self, remote: str, local: Path) -> None:
        self.ssh.get(self._path(remote), local)

    def exists(self, remote: str) -> bool:
        return self.ssh.exists(self._path(remote))

    def start(self, argv: list[str], log: str, pid_file: str, env: dict[str, str]) -> int:
        pid = self.ssh.start_detached(argv, self._path(log), self._path(pid_file), env=env,
                                      cwd=self.workdir)
        if self.pid_mirror:  # so the spot watcher's SIGTERM reaches the job (checkpoint now)
            mirror = shlex.quote(self.pid_mirror)
            self.ssh.run(f"mkdir -p $(dirname {mirror}) 2>/dev/null && echo {pid} > {mirror} "
                         "2>/dev/null || true", timeout_s=30.0)
        return pid

    def running(self, pid_file: str) -> bool:
        return self.ssh.is_running(self._path(pid_file))

    def tail(self, remote: str, offset: int) -> tuple[bytes, int]:
        return self.ssh.tail(self._path(remote), offset)

    def signal(self, pid_file: str, sig: int = signals.SIGTERM) -> None:
        self.ssh.kill(self._path(pid_file), sig)

    def heartbeat(self, lease_s: float = 0.0) -> None:
        if not self.heartbeat_path:
            return
        if lease_s <= 0:
            self.ssh.touch(self.heartbeat_path)
            return
        # A future mtime: the dead-man switch counts from it (its max lifetime still applies).
        until = int(time.time() + lease_s)
        path = shlex.quote(self.heartbeat_path)
        self.ssh.run(f"mkdir -p $(dirname {path}) && touch -d @{until} {path}", timeout_s=30.0)

    def reconnect(self, deadline_s: float) -> None:
        self.ssh.connect(deadline_s)  # at once when the link is up

    def close(self) -> None:
        self.ssh.close()
