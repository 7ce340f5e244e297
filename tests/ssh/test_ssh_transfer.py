"""Resumable SFTP: drop the connection mid-file, resume, verify; skip what is already there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sshd import Sshd, kill_pid_file, wait_for

from launcher.errors import SshError
from launcher.ssh.client import Ssh

SIZE = 3 * 1024 * 1024 + 12345  # a few MiB and not a multiple of any chunk size


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def random_file(path: Path, size: int = SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


class DropAfter:
    """A progress callback that kills the connection once `limit` bytes have gone (once).

    With `landed` (the upload's .part, which is local here), it first waits until the box has
    written half of them: a drop then always leaves a partial file to resume, deterministically.
    """

    def __init__(self, ssh: Ssh, limit: int, landed: Path | None = None) -> None:
        self.ssh, self.limit, self.landed, self.moved, self.fired = ssh, limit, landed, 0, False

    def __call__(self, n: int) -> None:
        self.moved += n
        if not self.fired and self.moved >= self.limit:
            self.fired = True
            if self.landed is not None:
                wait_for(lambda: self.landed is not None and self.landed.exists()
                         and self.landed.stat().st_size >= self.limit // 2)
            transport = self.ssh._client.get_transport() if self.ssh._client else None
            assert transport is not None
            transport.close()


def test_put_and_get_a_file_then_skip_it(ssh: Ssh, tmp_path: Path) -> None:
    src = random_file(tmp_path / "src" / "data.bin")
    remote = str(tmp_path / "box" / "sub" / "data.bin")
    moved: list[int] = []
    stats = ssh.put(src, remote, progress=moved.append)
    assert sha(Path(remote)) == sha(src) and sum(moved) == SIZE == stats.bytes_moved
    assert not Path(remote + ".part").exists()
    again = ssh.put(src, remote)
    assert (again.skipped, again.bytes_moved) == (1, 0)

    back = tmp_path / "back" / "data.bin"
    assert ssh.get(remote, back).bytes_moved == SIZE
    assert sha(back) == sha(src)
    assert ssh.get(remote, back).skipped == 1


def test_interrupted_put_resumes_with_only_the_remainder(ssh: Ssh, sshd: Sshd, tmp_path: Path) -> None:
    src = random_file(tmp_path / "data.bin")
    remote = tmp_path / "box" / "data.bin"
    partial = Path(str(remote) + ".part")
    drop = DropAfter(ssh, 1024 * 1024, landed=partial)
    with pytest.raises(SshError, match="the connection dropped"):
        ssh.put(src, str(remote), progress=drop, retries=0)
    wait_for(lambda: not sshd.session_pids())  # the box finished writing what reached it
    had = partial.stat().st_size
    assert 512 * 1024 <= had < SIZE and not remote.exists()

    stats = ssh.put(src, str(remote))  # reconnects on its own
    assert sha(remote) == sha(src)
    assert stats.resumed == 1 and stats.bytes_moved == SIZE - had
    assert not partial.exists()


def test_interrupted_get_resumes_with_only_the_remainder(ssh: Ssh, tmp_path: Path) -> None:
    remote = random_file(tmp_path / "box" / "model.pt")
    local = tmp_path / "runs" / "model.pt"
    with pytest.raises(SshError, match="the connection dropped"):
        ssh.get(str(remote), local, progress=DropAfter(ssh, 1024 * 1024), retries=0)
    partial = local.with_name("model.pt.part")
    had = partial.stat().st_size
    assert 0 < had < SIZE and not local.exists()

    stats = ssh.get(str(remote), local)
    assert sha(local) == sha(remote)
    assert stats.resumed == 1 and stats.bytes_moved == SIZE - had < SIZE


def test_a_drop_mid_put_is_recovered_inside_one_call(ssh: Ssh, tmp_path: Path) -> None:
    src = random_file(tmp_path / "data.bin")
    remote = tmp_path / "box" / "data.bin"
    drop = DropAfter(ssh, 2 * 1024 * 1024, landed=Path(str(remote) + ".part"))
    stats = ssh.put(src, str(remote), progress=drop, retries=2)
    assert sha(remote) == sha(src)
    assert stats.reconnects == 1 and stats.resumed == 1
    assert stats.bytes_moved < 2 * SIZE  # the second attempt did not start over
    assert ssh.connects == 2


def test_a_foreign_part_file_is_detected_and_resent(ssh: Ssh, tmp_path: Path) -> None:
    src = random_file(tmp_path / "data.bin", 200_000)
    remote = tmp_path / "box" / "data.bin"
    remote.parent.mkdir()
    Path(str(remote) + ".part").write_bytes(b"not the same bytes" * 100)
    stats = ssh.put(src, str(remote))
    assert sha(remote) == sha(src)
    assert stats.resumed == 1 and stats.bytes_moved > 200_000  # resumed, failed the hash, resent


def test_trees_go_and_come_back(ssh: Ssh, tmp_path: Path) -> None:
    tree = tmp_path / "data"
    random_file(tree / "a.bin", 1000)
    random_file(tree / "nested" / "deeper" / "b.bin", 70_000)
    (tree / "empty").mkdir()
    (tree / "leftover.part").write_bytes(b"ignored")
    (tree / "a.bin").chmod(0o640)
    remote = tmp_path / "box" / "job" / "data"
    stats = ssh.put(tree, str(remote))
    assert stats.files == 2
    assert sha(remote / "nested" / "deeper" / "b.bin") == sha(tree / "nested" / "deeper" / "b.bin")
    assert (remote / "empty").is_dir() and not (remote / "leftover.part").exists()
    assert (remote / "a.bin").stat().st_mode & 0o777 == 0o640

    (tree / "a.bin").write_bytes(b"changed")
    second = ssh.put(tree, str(remote))
    assert (second.skipped, second.bytes_moved) == (1, len(b"changed"))

    back = tmp_path / "back"
    ssh.get(str(remote), back)
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*")) == [
        "a.bin", "empty", "nested", "nested/deeper", "nested/deeper/b.bin"]
    assert (back / "a.bin").read_bytes() == b"changed"


def test_missing_paths_are_clear(ssh: Ssh, tmp_path: Path) -> None:
    with pytest.raises(SshError, match="does not exist"):
        ssh.put(tmp_path / "nope", str(tmp_path / "x"))
    with pytest.raises(SshError, match="does not exist on the box"):
        ssh.get(str(tmp_path / "nope"), tmp_path / "x")


def test_heartbeats_from_a_thread_during_a_transfer(ssh: Ssh, tmp_path: Path) -> None:
    import threading

    src = random_file(tmp_path / "data.bin")
    beat, stop, beats, errors = tmp_path / "heartbeat", threading.Event(), [], []

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                ssh.touch(str(beat))
                beats.append(1)
            except SshError as exc:  # pragma: no cover - shows in the assert below
                errors.append(exc)
            stop.wait(0.05)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    try:
        ssh.put(src, str(tmp_path / "box" / "data.bin"))
        wait_for(lambda: len(beats) >= 2)
    finally:
        stop.set()
        thread.join()
    assert sha(tmp_path / "box" / "data.bin") == sha(src)
    assert not errors and beat.exists()


def test_a_refusal_by_the_box_is_not_mistaken_for_a_drop(ssh: Ssh, tmp_path: Path) -> None:
    src = random_file(tmp_path / "data.bin", 1000)
    (tmp_path / "afile").write_text("a file, not a folder")
    with pytest.raises(SshError) as err:
        ssh.put(src, str(tmp_path / "afile" / "sub" / "data.bin"))
    assert "check the remote path" in (err.value.fix or "")
    assert ssh.connects == 1  # no reconnect, no retry


def test_empty_files_travel_too(ssh: Ssh, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    ssh.put(tmp_path / "empty.txt", str(tmp_path / "box" / "empty.txt"))
    ssh.get(str(tmp_path / "box" / "empty.txt"), tmp_path / "back" / "empty.txt")
    assert (tmp_path / "back" / "empty.txt").read_bytes() == b""


def test_a_log_still_being_written_is_fetched_as_it_was(ssh: Ssh, tmp_path: Path) -> None:
    log, pid_file = tmp_path / "train.log", str(tmp_path / "w.pid")
    ssh.start_detached("while true; do seq 1 5000; sleep 0.01; done", str(log), pid_file)  # ~2 MB/s
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 200_000)
        local = tmp_path / "runs" / "train.log"
        stats = ssh.get(str(log), local)
        assert stats.bytes_moved == local.stat().st_size > 200_000
        assert log.read_bytes().startswith(local.read_bytes())  # a true prefix, verified
    finally:
        kill_pid_file(Path(pid_file))


def test_without_a_sha256_tool_on_the_box_it_hashes_over_sftp(
        ssh: Ssh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "sha256", lambda path, size=None: None)  # as on a box without one
    src = random_file(tmp_path / "data.bin", 300_000)
    remote = tmp_path / "box" / "data.bin"
    ssh.put(src, str(remote))
    assert ssh.put(src, str(remote)).skipped == 1
    back = tmp_path / "back.bin"
    ssh.get(str(remote), back)
    assert sha(back) == sha(src)
