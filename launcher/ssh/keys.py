"""Per-job SSH keys: an ed25519 login key and an ed25519 host key, both made here.

The login key's private half never leaves this machine (AWS gets the public half through
ImportKeyPair). The host key pair is made here too and installed on the box by its user-data,
so the launcher knows the box's host key before it boots and pins it: no trust-on-first-use.
Files live in `<user data dir>/keys/<job>/`, the folder 0700 and every file 0600, and are
removed when the job ends (`remove_job_keys`).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from launcher.errors import InputError

_SAFE_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job."""

    job_id: str
    private_key_path: Path  # OpenSSH private login key, 0600
    public_key: str  # "ssh-ed25519 AAAA... gpuhire:JOB"
    host_private_key: str  # OpenSSH private host key (text), goes into user-data
    host_public_key: str  # "ssh-ed25519 AAAA...": pinned by the SSH client


def keys_root() -> Path:
    """Where job keys live: the user's data directory."""
    return Path(platformdirs.user_data_dir("gpuhire")) / "keys"


def _job_dir(job_id: str) -> Path:
    if not _SAFE_JOB.match(job_id):
        raise InputError(f"job id {job_id!r} is not usable as a key name", "use letters, digits, . _ -")
    return keys_root() / job_id


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the first byte: never a moment where others could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def new_ed25519_pair(comment: str = "") -> tuple[bytes, str]:
    """A new ed25519 key pair: the OpenSSH private key (PEM bytes) and the public line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, f"{public} {comment}".rstrip()


def job_keys(job_id: str) -> JobKeys:
    """The job's keys, made on first use and reused after (a retried launch keeps them)."""
    folder = _job_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    login, host = folder / "id_ed25519", folder / "host_ed25519"
    for path in (login, host):
        if not path.exists() or not path.with_suffix(".pub").exists():
            private, public = new_ed25519_pair(f"gpuhire:{job_id}")
            _write_private(path, private)
            _write_private(path.with_suffix(".pub"), (public + "\n").encode())
    return JobKeys(
        job_id=job_id,
        private_key_path=login,
        public_key=login.with_suffix(".pub").read_text().strip(),
        host_private_key=host.read_text(),
        host_public_key=" ".join(host.with_suffix(".pub").read_text().split()[:2]),
    )


def remove_job_keys(job_id: str) -> bool:
    """Delete the job's key folder; True if there was one."""
    folder = _job_dir(job_id)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def job_ids_with_keys() -> list[str]:
    """Jobs that still have keys on this machine (gc removes those of ended jobs)."""
    root = keys_root()
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())
