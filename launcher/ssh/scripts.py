"""The POSIX shell lines `Ssh` runs on a box: start detached, check, signal, hash.

Pure string builders (no paramiko, no I/O) so the quoting can be read in one place. They
assume only a POSIX `sh` with `kill`, `cat`, `mv`, `mkdir`, `nohup`; `setsid` and `/proc`
are used when present (Linux) and skipped otherwise (macOS hosts of the `ssh` provider).
"""

from __future__ import annotations

import shlex
import signal as signals
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from launcher.errors import SshError

q = shlex.quote


def detached(cmd: Sequence[str] | str, log_path: str, pid_path: str,
             env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
    """Start `cmd` in a new session, output appended to `log_path`; print its pid, write `pid_path`.

    nohup + setsid: the job has no controlling terminal and is not in the SSH session's process
    group, so neither a hang-up nor sshd tearing down the session reaches it. The pid file is
    written to a temporary name and renamed, so a reader never sees it half-written. An argv list
    is exec'ed (the pid is the program's own); a string is shell code run by `sh -c`.
    """
    for name in env or {}:
        if not name.isidentifier():
            raise SshError(f"bad environment variable name {name!r}", "use letters, digits and _")
    assigns = " ".join(f"{k}={q(v)}" for k, v in (env or {}).items())
    program = cmd if isinstance(cmd, str) else f"exec {shlex.join(cmd)}"
    inner = (f"cd {q(cwd)} && " if cwd else "") + (f"export {assigns}; " if assigns else "") + program
    dirs = " ".join(q(str(PurePosixPath(p).parent)) for p in (log_path, pid_path))
    return (
        f"mkdir -p {dirs} && S=; command -v setsid >/dev/null 2>&1 && S=setsid; "
        f"nohup $S sh -c {q(inner)} >> {q(log_path)} 2>&1 < /dev/null & "
        f"echo $! > {q(pid_path)}.tmp && mv {q(pid_path)}.tmp {q(pid_path)} && echo $!"
    )


def running(pid_path: str) -> str:
    """Exit 0 if the pid in `pid_path` is alive and not a zombie (an unreaped orphan has ended)."""
    return (
        f'pid=$(cat {q(pid_path)} 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null '
        "|| exit 1; [ -r /proc/$pid/stat ] || exit 0; "
        '[ "$(sed "s/.*) //" /proc/$pid/stat | cut -c1)" != Z ]'
    )


def kill(pid_path: str, sig: int, group: bool) -> str:
    """Send `sig` to the pid in `pid_path` (its process group with `group`); exit 0 if delivered."""
    name = signals.Signals(sig).name.removeprefix("SIG")
    target = '-- -"$pid"' if group else '"$pid"'
    return f'pid=$(cat {q(pid_path)} 2>/dev/null) && [ -n "$pid" ] && kill -s {name} {target}'


def sha256(path: str, size: int | None = None) -> str:
    """Print `<hex digest>  -` of the file (its first `size` bytes if given); fail if it is missing.

    sha256sum on Linux, shasum on macOS. Hashing a prefix lets a file that is still being appended
    to (a log) be verified as it was when its size was read.
    """
    p = q(path)
    feed = f"cat -- {p}" if size is None else f"head -c {int(size)} -- {p}"
    # If sha256sum is missing it reads nothing, so shasum still gets the whole stream.
    return f"[ -f {p} ] && {feed} | {{ sha256sum || shasum -a 256; }} 2>/dev/null"
