"""Whom the SSH client trusts: the one pinned host key, and the job's own login key file.

Used by launcher/ssh/client.py. An unknown host is refused (paramiko's RejectPolicy, never
AutoAddPolicy); a login key others can read, or one with a passphrase, is refused too.
"""

from __future__ import annotations

import shlex
import stat
from pathlib import Path
from typing import NoReturn

import paramiko

from launcher.errors import SshError
from launcher.ssh.hostkeys import PinnedHostKey


class RefuseUnpinned(paramiko.RejectPolicy):
    """RejectPolicy with our message: a host we hold no pinned key for is never trusted."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise SshError(
            f"host {hostname} presented {key.get_name()} key {key.fingerprint} but no key is pinned for it",
            "never connect to an unpinned host: pin its key (docs/ssh.md) or run `gpuhire gc`",
        )


def load_private_key(path: Path) -> paramiko.PKey:
    """The login key, refused if others can read it or it cannot be used without a passphrase."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        fix = "run `gpuhire gc` and launch again (keys are per job)"
        raise SshError(f"SSH key {path} does not exist", fix) from None
    if mode & 0o077:
        raise SshError(
            f"SSH key {path} is readable by others (mode {stat.S_IMODE(mode):04o})",
            f"run `chmod 600 {shlex.quote(str(path))}`",
        )
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        fix = "use an unencrypted per-job key (made by gpuhire)"
        raise SshError(f"SSH key {path} is encrypted", fix) from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        fix = "point key_path at an OpenSSH private key"
        raise SshError(f"SSH key {path} cannot be read: {exc}", fix) from None


def pinned_pkey(pin: PinnedHostKey) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_type_string(pin.key_type, pin.blob)
    except (paramiko.SSHException, ValueError) as exc:
        fix = "pin the box's key again (docs/ssh.md)"
        raise SshError(f"pinned host key cannot be loaded: {exc}", fix) from None
