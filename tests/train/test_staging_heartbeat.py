"""The dead-man switch hears from the launcher while data is shipped (real sshd, real SFTP)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sshd import Sshd

from launcher.providers.ssh import SshMachine
from launcher.rundir import RunDir, RunState
from launcher.ssh.client import Ssh
from launcher.ssh.host import SshHost
from launcher.train import flow as train
from launcher.train.types import TrainDeps, TrainResult


class _Renter:
    provider, gpu = "ssh", "cpu"

    def trainer_argv(self, args: list[str]) -> list[str]:
        return ["true"]  # the job itself does not matter here


def test_shipping_keeps_the_heartbeat_going(box: Sshd, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train, "HEARTBEAT_S", 0.05)
    run = RunDir(tmp_path / "runs" / "job")
    run.dataset.mkdir(parents=True)
    (run.dataset / "lines.bin").write_bytes(os.urandom(24 << 20))  # a second or so on loopback
    beat_file = tmp_path / "heartbeat"
    ssh = Ssh(box.target()).connect()
    host = SshHost(ssh, str(tmp_path / "remote"), heartbeat_path=str(beat_file))
    beats: list[float] = []
    real_beat = host.heartbeat

    def heartbeat(lease_s: float = 0.0) -> None:
        real_beat(lease_s)
        beats.append(time.monotonic())

    host.heartbeat = heartbeat  # type: ignore[method-assign]
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
    during = [b for b in beats if start <= b <= end]
    assert len(during) >= 3, (len(beats), end - start)  # beats all through the transfer
    assert beat_file.exists()  # touched on the box, over SSH
    assert (tmp_path / "remote" / "dataset" / "lines.bin").stat().st_size == 24 << 20
