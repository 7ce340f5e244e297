"""`gpuhire train` on AWS end to end, on loopback: moto as EC2, a real sshd as the instance,
the real trainer (tiny preset, `process` runtime), and a spot interruption in the middle.

The instance's SSH target is overridden ([aws] ssh_targets "*") to point at the sshd, which
serves the host key gpuhire injected at boot and accepts the job's own login key, exactly as
the user-data would set up a real box.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from aws_fakes import AMI_PARAMETER, OPERATOR, AwsWorld
from sshd import Sshd, free_port, kill_pid_file
from test_aws_interruption import interrupt

from jobs.htr.synth import synth
from launcher.config import Settings
from launcher.providers.aws.provider import AwsProvider
from launcher.ssh.keys import job_keys
from launcher.status import JobLog
from launcher.train.flow import train
from launcher.train.ground_truth import compile_ground_truth
from launcher.train.types import TrainDeps, TrainOptions
from ledger.book import Ledger

pytestmark = pytest.mark.slow


def _user() -> str:
    import getpass

    return getpass.getuser()


def _epochs(run: Path) -> list[int]:
    path = run / "events.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e["epoch"] for e in events if e["event"] == "epoch"]


def reclaim_after_first_epoch(provider: object, job: str, run: Path) -> tuple[threading.Thread, list[str]]:
    """A started thread that waits for the run's first `epoch` event, then does what EC2 does
    when it takes the job's spot instance back; the list gets that instance's id."""
    interrupted: list[str] = []

    def take_it_back() -> None:
        deadline = time.monotonic() + 240
        while not _epochs(run) and time.monotonic() < deadline:
            time.sleep(0.2)
        (first,) = [i for i in provider.instances(job) if not i.state.gone]  # type: ignore[attr-defined]
        interrupt(first.instance_id)
        interrupted.append(first.instance_id)

    thread = threading.Thread(target=take_it_back)
    thread.start()
    return thread, interrupted


class InstanceBox:
    """The "instance" on loopback: each launch boots it with that launch's injected host key
    and login key, as the user-data does on a real box (keys are per launch: a released job's
    keys are deleted, a relaunch makes new ones)."""

    def __init__(self, root: Path, job: str) -> None:
        self.root, self.job, self.port = root, job, free_port()
        self.server: Sshd | None = None
        self.boots = 0

    def boot(self, _params: object = None) -> None:
        keys = job_keys(self.job)
        if self.server is not None:
            self.server.kill()
        self.boots += 1
        self.server = Sshd(self.root / f"boot{self.boots}", port=self.port,
                           host_private_key=keys.host_private_key)
        self.server.authorize(keys.public_key)
        self.server.start()

    def kill(self) -> None:
        if self.server is not None:
            self.server.kill()

    def vanish(self) -> None:
        """The box is gone: its sshd and every open connection die, new ones are refused."""
        assert self.server is not None
        pids = self.server.session_pids()
        self.server.kill()  # no new connections from here on
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def instance_box(tmp_path: Path, world: AwsWorld):
    boxes: list[InstanceBox] = []

    def make(job: str) -> InstanceBox:
        box = InstanceBox(tmp_path / "instances", job)
        world.before_run.append(box.boot)  # RunInstances boots the box
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.kill()


def test_train_on_spot_survives_interruption_and_settles_the_bill(
    make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, instance_box
) -> None:
    job = "train-e2e-aws"
    box = instance_box(job)
    provider = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=_user())
    renter = AwsProvider(provider, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                       workdir_root=str(tmp_path / "box-home"))
    assert renter.plan().usd_per_hour == provider.offers("t4")[0].usd_per_hour
    synth(tmp_path / "gt", 160, seed=3)
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)

    thread, interrupted = reclaim_after_first_epoch(provider, job, run)
    result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=6, yes=True,
                                out=run, job=job, max_restarts=2), deps)  # 6 epochs: time to interrupt
    thread.join(10)

    assert result.status == "done", (result.message, said)
    assert interrupted and any("interrupted by the provider" in s for s in said), said
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    assert len(starts) == 2  # two attempts
    assert events[starts[1]]["resumed_from_step"] > 0  # from the checkpoint, not from zero
    second_epochs = [e["epoch"] for e in events[starts[1]:] if e["event"] == "epoch"]
    assert second_epochs and second_epochs[0] > 1 and second_epochs[-1] == 6
    assert sorted(set(_epochs(run))) == [1, 2, 3, 4, 5, 6]
    assert (run / "model.pt").stat().st_size > 10_000

    first, second = book.sessions(job_id=job)
    assert first.session.instance_id == interrupted[0]
    assert first.session.end_reason == "spot-interruption"
    assert first.cost.interruption_free and first.cost.compute_usd == 0
    assert second.session.end_reason == "completed" and second.cost.compute_usd > 0
    assert all(i.state.gone for i in provider.instances(job))  # nothing left running
    assert book.get_job(job).status == "done"
    assert box.boots == 2
    assert result.usd == first.cost.total_usd + second.cost.total_usd
    # EC2 is asked about the box every 15 s, not at every 0.5 s poll (the rest: launch
    # waiters, release, close_sessions)
    describes = world.calls.count(("ec2", "DescribeInstances"))
    assert describes <= result.seconds / 15 + 30, (describes, result.seconds)
    stages = set(result.timings)
    assert {"launch until running", "ssh connect", "ship data and checkpoints",
            "prepare runtime (image pull)", "start detached", "start to first step seen",
            "done seen to settle", "fetch model and logs", "done seen to terminate called",
            "terminate and close session"} <= stages
    assert len(result.attempt_timings) == 2
    assert all("start to first step seen" in a for a in result.attempt_timings)
    # read by bench/bench_train_overhead.py
    print("TIMINGS", json.dumps({"total": result.timings, "attempts": result.attempt_timings}))


def test_box_taken_without_notice_and_unreachable_is_relaunched(
    make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, instance_box,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EC2 takes the box with no two-minute notice and it vanishes (SSH refused): the launcher
    asks EC2 between short reconnect turns, relaunches and resumes from the last checkpoint
    it copied home, instead of failing the job after 10 minutes of reconnecting."""
    monkeypatch.setattr("launcher.train.follow.RECONNECT_TRY_S", 3.0)
    job = "train-e2e-vanish"
    box = instance_box(job)
    provider = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=_user())
    home = tmp_path / "box-home"
    renter = AwsProvider(provider, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                       workdir_root=str(home))
    synth(tmp_path / "gt", 160, seed=3)
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)
    taken: list[str] = []

    def vanish() -> None:
        deadline = time.monotonic() + 240
        while not (_epochs(run) and (run / "run" / "checkpoint.pt").exists()):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (first,) = [i for i in provider.instances(job) if not i.state.gone]
        box.vanish()  # unreachable first, so the launcher cannot see anything on the box
        interrupt(first.instance_id)  # then EC2's word, without any notice on the box
        pid = int((home / job / "train.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # and the job died with the box, no last checkpoint
        taken.append(first.instance_id)

    thread = threading.Thread(target=vanish)
    thread.start()
    started = time.monotonic()
    result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=4, yes=True,
                                out=run, job=job, max_restarts=1), deps)
    thread.join(10)

    assert result.status == "done", (result.message, said)
    assert taken and any("took the machine back while it was unreachable" in s for s in said), said
    assert time.monotonic() - started < 200  # not the 600 s reconnect window
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from_step"] > 0
    assert _epochs(run)[-1] == 4 and (run / "model.pt").exists()
    first, second = book.sessions(job_id=job)
    assert first.session.instance_id == taken[0]
    assert first.session.end_reason == "spot-interruption" and first.cost.compute_usd == 0
    assert second.session.end_reason == "completed"
    assert all(i.state.gone for i in provider.instances(job))
    assert box.boots == 2


def test_logs_of_a_running_aws_job_come_from_its_box(make_provider, world: AwsWorld, book: Ledger,
                                                     tmp_path: Path, instance_box) -> None:
    job = "logs-aws"
    box = instance_box(job)
    home = tmp_path / "box-home"
    aws = {"ssh_targets": {"*": f"127.0.0.1:{box.port}"}, "ssh_user": _user(), "workdir": str(home)}
    cloud = make_provider(**aws)
    renter = AwsProvider(cloud, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                         workdir_root=str(home))
    synth(tmp_path / "gt", 60, seed=4)
    runs = tmp_path / "runs"
    deps = TrainDeps(ledger=book, provider=renter, say=lambda _: None, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)
    # what `gpuhire logs` builds from the user's config: the same [aws] table, the process runtime
    settings = Settings.model_validate({
        "aws": {"operator_cidrs": [OPERATOR], "ami_parameter": AMI_PARAMETER, **aws},
        "train": {"runtime": "process", "remote_python": sys.executable},
    })
    try:
        result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=200, yes=True,
                                    out=runs / job, job=job, detach=True), deps)
        assert result.status == "detached", result.message
        box_log = home / job / "train-0.log"  # on the "box" (its sshd runs on this machine)
        deadline = time.monotonic() + 120
        while not box_log.exists():
            assert time.monotonic() < deadline, "the trainer never started on the box"
            time.sleep(0.2)
        with box_log.open("a") as fh:
            fh.write("a line only the aws box holds\n")

        log = JobLog(book, settings, job, runs)
        text = b"".join(log.chunks(follow=False)).decode()
        assert "a line only the aws box holds" in text
        assert not (runs / job / "train.log").exists()  # read on the box, nothing copied home
        assert ("ec2", "DescribeInstances") in world.calls  # found through EC2, by the job's tag
        assert any(not i.state.gone for i in cloud.instances(job))  # reading it released nothing
    finally:
        kill_pid_file(home / job / "train.pid")
        cloud.release(job, "user")
