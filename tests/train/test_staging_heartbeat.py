"""The dead-man switch hears from the launcher while data is shipped (real sshd, real SFTP)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sshd import Sshd

from launcher.providers.ssh import SshMachine
from launcher.rundir import RunDir, RunState
from launcher.ssh.client import Ssh
from launcher.ssh.host import SshHost
from launcher.ssh.transfer import CHUNK
from launcher.train import flow as train
from launcher.train.types import TrainDeps, TrainResult


class _Renter:
    provider, gpu = "ssh", "cpu"

    def trainer_argv(self, args: list[str]) -> list[str]:
        return ["true"]  # the job itself does not matter here


def test_shipping_keeps_the_heartbeat_going(box: Sshd, tmp_path: Path, monkeypatch) -> None:
    """Held at its first, middle and last chunk, a real SFTP upload goes on only once the
    heartbeat thread has beaten twice more: beats come all through the transfer, on a loaded
    machine as on an idle one (conditions, not wall-clock counts)."""
    monkeypatch.setattr(train, "HEARTBEAT_S", 0.05)
    run = RunDir(tmp_path / "runs" / "job")
    run.dataset.mkdir(parents=True)
    chunks = 16
    (run.dataset / "lines.bin").write_bytes(os.urandom(chunks * CHUNK))
    beat_file = tmp_path / "heartbeat"
    ssh = Ssh(box.target()).connect()
    host = SshHost(ssh, str(tmp_path / "remote"), heartbeat_path=str(beat_file))
    beats: list[float] = []
    beaten = threading.Condition()
    real_beat = host.heartbeat

    def heartbeat(lease_s: float = 0.0) -> None:
        real_beat(lease_s)
        with beaten:
            beats.append(time.monotonic())
            beaten.notify_all()

    host.heartbeat = heartbeat  # type: ignore[method-assign]
    held: list[tuple[int, int, int]] = []  # (chunk, beats when held, beats when let go)
    sent = [0]

    def hold(nbytes: int) -> None:  # the transfer's progress callback, in the main thread
        sent[0] += 1
        if sent[0] not in (1, chunks // 2, chunks):
            return
        with beaten:
            before = len(beats)
            assert beaten.wait_for(lambda: len(beats) >= before + 2, timeout=120), "no beats"
            held.append((sent[0], before, len(beats)))

    real_put = ssh.put
    ssh.put = lambda local, remote, progress=None, **kw: real_put(local, remote, hold, **kw)  # type: ignore[method-assign]
    machine = SshMachine(host, None, None, "box")  # type: ignore[arg-type]
    shipped: list[float] = []
    real_ship = machine.ship

    def ship(local: Path, remote: str) -> None:
        shipped.append(time.monotonic())
        real_ship(local, remote)
        shipped.append(time.monotonic())

    machine.ship = ship  # type: ignore[method-assign]
    state = RunState(job="job", provider="ssh", gpu="cpu", data=[], preset="tiny", epochs=1,
                     max_restarts=0)
    deps = TrainDeps(ledger=None, provider=_Renter(), say=print, confirm=lambda q: True,  # type: ignore[arg-type]
                     compile_dataset=lambda i, o: 0)
    try:
        train._ship_and_start(state, run, deps, machine, TrainResult("job", "running", None, run.path))
    finally:
        ssh.close()
    start, end = shipped
    assert [c for c, _, _ in held] == [1, chunks // 2, chunks]  # beats at the start, middle, end
    assert all(start <= b <= end for b in beats[held[0][1]:held[-1][2]])  # all while shipping
    assert beat_file.exists()  # touched on the box, over SSH
    assert (tmp_path / "remote" / "dataset" / "lines.bin").stat().st_size == chunks * CHUNK
