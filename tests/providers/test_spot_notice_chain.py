"""The spot notice path as AWS bills it, as one chain on loopback (issue 13).

The box: a real sshd (tests/sshd.py) booted by each RunInstances, as in test_train_aws_e2e.py,
plus the box's metadata service (the IMDSv2 stand-in of test_aws_scripts.py, one per box) and
the REAL spot watcher (scripts/spot-watch.sh) polling it. The launcher: the real train flow and
the real trainer (tiny preset). EC2: moto in-process; it takes the box back through moto's
backend (test_aws_interruption.interrupt) at the notice's time, or never.

    the test's "EC2" serves a notice on the box's IMDS once a checkpoint is home
    -> the watcher writes the notice file and SIGTERMs the trainer, which checkpoints
    -> the launcher sees the notice, brings the checkpoint home and lets the box go (no
       TerminateInstances), relaunches at once, and the new attempt resumes from it
    -> EC2 takes the box at the notice's time (free in the first hour, billed after it), or
       does not, and the launcher terminates it [aws] notice_grace_s later (billed, `user`)

Clocks, honestly: the session's start is the launcher's clock (AwsCloud.now) at the launch, its
end EC2's own time (StateTransitionReason, moto's real clock). A launcher clock running N minutes
behind EC2's therefore books a session N minutes + the seconds the test ran, which is how a box
"interrupted at 50 minutes" is made here. The notice's `time` is EC2's clock too: the launcher
believes at most two minutes of it (reclaim.NOTICE_S), so the grace case runs unshifted, where
the deadline (notice time + grace) is checked on one clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aws_fakes import AwsWorld
from test_aws_interruption import interrupt
from test_aws_scripts import Imds, _Handler
from test_train_aws_e2e import InstanceBox, _user

from jobs.htr.synth import synth
from launcher.providers.aws.provider import AwsProvider
from launcher.providers.aws.scripts import script
from launcher.train.flow import train
from launcher.train.ground_truth import compile_ground_truth
from launcher.train.types import TrainDeps, TrainOptions
from ledger.book import Ledger
from ledger.timeutil import utcnow

pytestmark = pytest.mark.slow

LINES = 64  # one short epoch: the notice comes in its middle, the relaunch finishes it
NOTICE_LEAD_S = 3  # the notice says EC2 takes the box this long after it is served


class SpotBox(InstanceBox):
    """An instance whose boot also starts its metadata service and the real spot watcher."""

    def __init__(self, root: Path, job: str, var_run: Path) -> None:
        super().__init__(root, job)
        self.var_run = var_run
        self.imds: list[Imds] = []  # one per boot: each box has its own
        self.watchers: list[subprocess.Popen[bytes]] = []

    def boot(self, params: object = None) -> None:
        super().boot(params)
        (self.var_run / "spot-notice").unlink(missing_ok=True)  # a new box has heard nothing
        imds = Imds(("127.0.0.1", 0), _Handler)
        threading.Thread(target=imds.serve_forever, daemon=True).start()
        watcher = self.var_run / "spot-watch.sh"
        watcher.write_text(script("spot-watch.sh"))
        host, port = imds.server_address[:2]
        self.imds.append(imds)
        self.watchers.append(subprocess.Popen(
            ["/bin/sh", str(watcher)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "GPUHIRE_IMDS": f"http://{host}:{port}", "GPUHIRE_POLL_S": "0.1",
                 "GPUHIRE_PID_FILE": str(self.var_run / "job.pid"),
                 "GPUHIRE_NOTICE_FILE": str(self.var_run / "spot-notice")}))

    def kill(self) -> None:
        super().kill()
        for proc in self.watchers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        for imds in self.imds:
            imds.shutdown()
            imds.server_close()


@dataclass(frozen=True)
class Case:
    behind_min: int  # the launcher's clock runs this far behind EC2's (see the docstring)
    ec2_takes: bool  # EC2 takes the box at the notice's time
    grace_s: int  # [aws] notice_grace_s


CASES = {
    "ec2-takes-it-at-50-min": Case(50, True, 120),
    "ec2-takes-it-at-70-min": Case(70, True, 120),
    "ec2-never-takes-it": Case(0, False, 4),
}


@pytest.fixture
def spot_box(tmp_path: Path, world: AwsWorld, monkeypatch: pytest.MonkeyPatch):
    var_run = tmp_path / "var-run"  # the box's /var/run/gpuhire, private to this test
    var_run.mkdir()
    for name, file in (("HEARTBEAT_PATH", "heartbeat"), ("PID_FILE", "job.pid"),
                       ("NOTICE_FILE", "spot-notice")):
        monkeypatch.setattr(f"launcher.providers.aws.cloud.{name}", str(var_run / file))
    boxes: list[SpotBox] = []

    def make(job: str) -> SpotBox:
        box = SpotBox(tmp_path / "instances", job, var_run)
        world.before_run.append(box.boot)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.kill()


def _events(run: Path) -> list[dict[str, object]]:
    if not (run / "events.jsonl").exists():
        return []
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_spot_notice_chain_is_billed_as_aws_bills_it(
    case: Case, make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, spot_box
) -> None:
    job = "train-notice"
    box = spot_box(job)
    behind = timedelta(minutes=case.behind_min)
    cloud = make_provider(now=lambda: utcnow() - behind, notice_grace_s=case.grace_s,
                          ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=_user())
    terminated: list[str] = []
    cloud.ec2.meta.events.register("before-parameter-build.ec2.TerminateInstances",
                                   lambda params, **_: terminated.extend(params["InstanceIds"]))
    renter = AwsProvider(cloud, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                         workdir_root=str(tmp_path / "box-home"))
    synth(tmp_path / "gt", LINES, seed=3)
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)
    noticed: list[tuple[str, datetime]] = []

    def ec2() -> None:  # gives notice once the trainer is under way; takes the box at its time
        deadline = time.monotonic() + 240
        while not any(e["event"] == "progress" for e in _events(run)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.1)
        (first,) = [i for i in cloud.instances(job) if not i.state.gone]
        at = utcnow().replace(microsecond=0) + timedelta(seconds=NOTICE_LEAD_S)
        box.imds[0].notice = {"action": "terminate", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        noticed.append((first.instance_id, at))
        if case.ec2_takes:
            time.sleep(max(0.0, (at - utcnow()).total_seconds()))
            interrupt(first.instance_id)

    thread = threading.Thread(target=ec2)
    thread.start()
    started = time.monotonic()
    try:
        result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=1, yes=True,
                                    out=run, job=job, max_restarts=1), deps)
    finally:
        thread.join(30)
    wall_s = time.monotonic() - started

    # The chain: notice -> watcher's SIGTERM -> checkpoint home -> relaunch resumes from it.
    assert result.status == "done", (result.message, said)
    assert noticed and any("interrupted by the provider" in s for s in said), said
    (old_id, notice_at), = noticed
    first_watcher = box.watchers[0]
    assert first_watcher.wait(timeout=5) == 0  # it did its work: notice written, SIGTERM sent
    assert b"SIGTERM to" in first_watcher.stderr.read()  # type: ignore[union-attr]
    events = _events(run)
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    assert len(starts) == 2
    attempt0 = events[starts[0]:starts[1]]
    assert [e["event"] for e in attempt0][-2:] == ["checkpoint", "interrupted"]
    assert events[starts[1]]["resumed_from_step"] == attempt0[-2]["step"] > 0
    assert (run / "model.pt").stat().st_size > 10_000

    # The books: EC2's own word, costed as AWS bills it.
    first, second = book.sessions(job_id=job)
    assert first.session.instance_id == old_id
    assert second.session.end_reason == "completed" and second.cost.compute_usd > 0
    assert first.session.end_at is not None
    price = first.usd_per_hour
    if case.ec2_takes:
        assert old_id not in terminated  # the launcher never ended the box EC2 was taking
        assert first.session.end_reason == "spot-interruption"
        assert case.behind_min * 60 <= first.cost.duration_s < case.behind_min * 60 + wall_s + 2
    else:
        assert old_id in terminated
        assert first.session.end_reason == "user"
        # ended only once the grace after the notice's time was over (EC2's times are whole seconds)
        assert first.session.end_at >= notice_at + timedelta(seconds=case.grace_s)
        assert second.session.start_at < first.session.end_at  # the relaunch did not wait for it
    if case.ec2_takes and case.behind_min < 60:
        assert first.cost.interruption_free and first.cost.compute_usd == 0
        assert first.cost.storage_usd > 0  # the volume is billed all the same
    else:
        assert not first.cost.interruption_free
        assert first.cost.compute_usd == price * first.cost.billed_s / 3600 > 0
        assert first.cost.storage_usd > 0
    assert result.usd == first.cost.total_usd + second.cost.total_usd
    assert all(i.state.gone for i in cloud.instances(job))  # nothing left running
    assert not book.sessions(open_only=True)
    assert book.get_job(job).status == "done"
    assert not cloud.reclaims.pending  # nothing left to EC2 either
