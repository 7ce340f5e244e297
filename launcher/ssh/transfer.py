"""Resumable SFTP copies of files and trees, used by launcher/ssh/client.py (`Ssh.put` / `Ssh.get`).

Each file goes to `<name>.part` first and is renamed over the target only when its sha256
matches the source, so the target is either the old file or the complete new one. A `.part`
left by a dropped connection is resumed from its size; a file already there with the same size
and hash is skipped. If a resumed file fails the hash check (the `.part` held something else),
it is sent again once from the start. Hashes are computed on the box (`sha256sum`) when it can,
so checking a large file does not read it back over the network.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import paramiko

from launcher.errors import SshError

ProgressFn = Callable[[int], None]  # called with the bytes just moved (for a progress bar)
# sha256 of a remote file (of its first `size` bytes if given), computed on the box; None: cannot
RemoteHasher = Callable[[str, "int | None"], "str | None"]
CHUNK = 256 * 1024  # bytes per local read/write; paramiko splits SFTP requests itself
PART = ".part"


@dataclass
class TransferStats:
    """What one put/get did (across its reconnects)."""

    files: int = 0  # files looked at
    skipped: int = 0  # already complete on the other side
    resumed: int = 0  # continued from a .part
    bytes_moved: int = 0  # bytes that actually crossed the network in this call
    reconnects: int = 0  # dropped connections recovered from


def sha256_file(path: Path) -> str:
    """sha256 of a local file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _remote_sha256(sftp: paramiko.SFTPClient, path: str, hasher: RemoteHasher,
                   size: int | None = None) -> str:
    digest = hasher(path, size)
    if digest is not None:
        return digest
    h = hashlib.sha256()  # no sha256 tool on the box: hash over SFTP (reads it back once)
    with sftp.open(path, "rb") as fh:
        left = (fh.stat().st_size or 0) if size is None else size
        fh.prefetch(left)
        while left > 0 and (chunk := fh.read(min(CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def remote_stat(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    """The remote path's attributes, or None if it does not exist."""
    try:
        return sftp.stat(path)
    except FileNotFoundError:
        return None


def _mkdirs(sftp: paramiko.SFTPClient, path: PurePosixPath) -> None:
    missing = []
    while str(path) not in ("", ".", "/") and remote_stat(sftp, str(path)) is None:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        sftp.mkdir(str(folder))


def _replace_remote(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
    try:
        sftp.posix_rename(source, target)  # OpenSSH extension: atomic, overwrites
    except OSError:
        if remote_stat(sftp, target) is not None:  # plain SFTP rename refuses to overwrite
            sftp.remove(target)
        sftp.rename(source, target)


def tail(sftp: paramiko.SFTPClient, path: str, offset: int, max_bytes: int,
         whole_lines: bool) -> tuple[bytes, int]:
    """Bytes of `path` from `offset` and the next offset (see `Ssh.tail`)."""
    try:
        fh = sftp.open(path, "rb")
    except FileNotFoundError:
        return b"", offset
    with fh:
        size = fh.stat().st_size or 0
        start = offset if size >= offset else 0  # shorter than what we read: a new file
        fh.seek(start)
        data = fh.read(min(size - start, max_bytes)) if size > start else b""
    cut = data.rfind(b"\n") + 1
    if whole_lines and (cut or len(data) < max_bytes):  # a line longer than max_bytes comes in pieces
        data = data[:cut]
    return data, start + len(data)


# --- upload -----------------------------------------------------------------------------------


def put_path(sftp: paramiko.SFTPClient, local: Path, remote: str, hasher: RemoteHasher,
             progress: ProgressFn | None, stats: TransferStats) -> None:
    """Upload a file or a folder tree (empty folders included) to `remote`."""
    if not local.exists():
        raise SshError(f"{local} does not exist", "check the path to upload")
    if local.is_file():
        _mkdirs(sftp, PurePosixPath(remote).parent)
        put_file(sftp, local, remote, hasher, progress, stats)
        return
    _mkdirs(sftp, PurePosixPath(remote))
    for folder, dirs, files in os.walk(local):
        dirs.sort()
        rel = Path(folder).relative_to(local)
        target_dir = PurePosixPath(remote, *rel.parts)
        for name in dirs:
            _mkdirs(sftp, target_dir / name)
        for name in sorted(files):
            if not name.endswith(PART):
                put_file(sftp, Path(folder, name), str(target_dir / name), hasher, progress, stats)


def put_file(sftp: paramiko.SFTPClient, local: Path, remote: str, hasher: RemoteHasher,
             progress: ProgressFn | None, stats: TransferStats) -> None:
    """Upload one file: skip if complete, resume a .part, verify, rename into place."""
    stats.files += 1
    size, want = local.stat().st_size, sha256_file(local)
    there = remote_stat(sftp, remote)
    if there is not None and there.st_size == size and _remote_sha256(sftp, remote, hasher) == want:
        stats.skipped += 1
        return
    part = remote + PART
    for fresh in (False, True):
        partial = None if fresh else remote_stat(sftp, part)
        offset = (partial.st_size or 0) if partial is not None else 0
        offset = offset if offset <= size else 0  # a longer .part is not ours: start over
        if offset:
            stats.resumed += 1
        with sftp.open(part, "r+b" if offset else "wb") as out, local.open("rb") as src:
            out.set_pipelined(True)  # do not wait for each write's ack: bandwidth, not latency
            out.seek(offset)
            src.seek(offset)
            while chunk := src.read(CHUNK):
                out.write(chunk)
                stats.bytes_moved += len(chunk)
                if progress:
                    progress(len(chunk))
        if _remote_sha256(sftp, part, hasher) == want:
            sftp.chmod(part, stat.S_IMODE(local.stat().st_mode))
            _replace_remote(sftp, part, remote)
            return
        if not offset:
            break
    fix = "retry; check the box's disk is not full"
    raise SshError(f"upload of {local} to {remote} does not match its sha256", fix)


# --- download ---------------------------------------------------------------------------------


def get_path(sftp: paramiko.SFTPClient, remote: str, local: Path, hasher: RemoteHasher,
             progress: ProgressFn | None, stats: TransferStats) -> None:
    """Download a file or a folder tree from `remote` into `local`."""
    there = remote_stat(sftp, remote)
    if there is None:
        raise SshError(f"{remote} does not exist on the box", "check the remote path")
    if not stat.S_ISDIR(there.st_mode or 0):
        local.parent.mkdir(parents=True, exist_ok=True)
        get_file(sftp, remote, local, there.st_size or 0, hasher, progress, stats)
        return
    local.mkdir(parents=True, exist_ok=True)
    for entry in sorted(sftp.listdir_attr(remote), key=lambda e: e.filename):
        child = f"{remote.rstrip('/')}/{entry.filename}"
        if stat.S_ISDIR(entry.st_mode or 0):
            get_path(sftp, child, local / entry.filename, hasher, progress, stats)
        elif stat.S_ISREG(entry.st_mode or 0) and not entry.filename.endswith(PART):
            get_file(sftp, child, local / entry.filename, entry.st_size or 0, hasher, progress, stats)


def get_file(sftp: paramiko.SFTPClient, remote: str, local: Path, size: int, hasher: RemoteHasher,
             progress: ProgressFn | None, stats: TransferStats) -> None:
    """Download the first `size` bytes of one file (a log still growing is copied as it was when
    listed): skip if complete, resume a .part, verify, rename into place."""
    stats.files += 1
    want = _remote_sha256(sftp, remote, hasher, size)
    if local.is_file() and local.stat().st_size == size and sha256_file(local) == want:
        stats.skipped += 1
        return
    part = local.with_name(local.name + PART)
    for fresh in (False, True):
        if fresh:  # the file may have been replaced on the box since we hashed it
            now = remote_stat(sftp, remote)
            if now is None:
                raise SshError(f"{remote} vanished from the box while being copied", "check the remote path")
            size = now.st_size or 0
            want = _remote_sha256(sftp, remote, hasher, size)
        offset = part.stat().st_size if not fresh and part.is_file() else 0
        offset = offset if offset <= size else 0
        if offset:
            stats.resumed += 1
        _copy_down(sftp, remote, part, offset, size, progress, stats)
        if sha256_file(part) == want:
            os.replace(part, local)
            return
        if not offset:
            break
    fix = "retry; the file may be changing on the box"
    raise SshError(f"download of {remote} to {local} does not match its sha256", fix)


def _copy_down(sftp: paramiko.SFTPClient, remote: str, part: Path, offset: int, size: int,
               progress: ProgressFn | None, stats: TransferStats) -> None:
    with sftp.open(remote, "rb") as src, part.open("r+b" if offset else "wb") as out:
        src.seek(offset)
        out.seek(offset)
        src.prefetch(size)  # many reads in flight from the offset on, not one round trip each
        left = size - offset
        while left > 0 and (chunk := src.read(min(CHUNK, left))):
            out.write(chunk)
            left -= len(chunk)
            stats.bytes_moved += len(chunk)
            if progress:
                progress(len(chunk))
