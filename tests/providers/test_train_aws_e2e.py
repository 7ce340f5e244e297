"""`gpuhire train` on AWS end to end, on loopback: moto as EC2, a real sshd as the instance,
the real trainer (tiny preset, `process` runtime), and a spot interruption in the middle.

The instance's SSH target is overridden ([aws] ssh_targets "*") to point at the sshd, which
serves the host key gpuhire injected at boot and accepts the job's own login key, exactly as
the user-data would set up a real box.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from aws_fakes import AwsWorld
from sshd import Sshd
from test_aws_interruption import interrupt

from jobs.htr.synth import synth
from launcher.aws_run import AwsRenter
from launcher.commands.train_cmds import compile_ground_truth
from launcher.keys import job_keys
from launcher.train import TrainDeps, TrainOptions, train
from ledger.book import Ledger

pytestmark = pytest.mark.slow


def _epochs(run: Path) -> list[int]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e["epoch"] for e in events if e["event"] == "epoch"]


@pytest.fixture
def instance_box(tmp_path: Path):
    def make(job: str) -> Sshd:
        keys = job_keys(job)  # the keys the launch will use (made once per job)
        server = Sshd(tmp_path / "sshd", host_private_key=keys.host_private_key)
        server.authorize(keys.public_key)
        server.start()
        return server

    made: list[Sshd] = []
    yield lambda job: made.append(make(job)) or made[-1]
    for server in made:
        server.kill()


def test_train_on_spot_survives_interruption_and_settles_the_bill(
    make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, instance_box
) -> None:
    job = "train-e2e-aws"
    box = instance_box(job)
    provider = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=box.user)
    renter = AwsRenter(provider, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20)
    assert renter.usd_per_hour() == provider.offers("t4")[0].usd_per_hour
    synth(tmp_path / "gt", 80, seed=3)
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, renter=renter, say=said.append, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)

    interrupted: list[str] = []

    def take_it_back() -> None:  # EC2 reclaims the spot instance after the first epoch
        deadline = time.monotonic() + 240
        while not _epochs(run) and time.monotonic() < deadline:
            time.sleep(0.2)
        (first,) = [i for i in provider.instances(job) if not i.state.gone]
        interrupt(first.instance_id)
        interrupted.append(first.instance_id)

    thread = threading.Thread(target=take_it_back)
    thread.start()
    result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=3, yes=True,
                                out=run, job=job, max_restarts=2), deps)
    thread.join(10)

    assert result.status == "done", (result.message, said)
    assert interrupted and any("interrupted by the provider" in s for s in said)
    epochs = _epochs(run)
    assert epochs[-1] == 3
    restart_at = next(i for i in range(1, len(epochs)) if epochs[i] <= epochs[i - 1])
    assert epochs[restart_at] > 1  # the second attempt resumed from the checkpoint, not epoch 1
    assert (run / "model.pt").stat().st_size > 10_000

    first, second = book.sessions(job_id=job)
    assert first.session.instance_id == interrupted[0]
    assert first.session.end_reason == "spot-interruption"
    assert first.cost.interruption_free and first.cost.compute_usd == 0
    assert second.session.end_reason == "completed" and second.cost.compute_usd > 0
    assert all(i.state.gone for i in provider.instances(job))  # nothing left running
    assert book.get_job(job).status == "done"
    assert result.usd == first.cost.total_usd + second.cost.total_usd
