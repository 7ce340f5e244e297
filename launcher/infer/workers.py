"""Where fleet workers run: spot instances on AWS, or worker processes on this machine.

A backend starts N workers (`python -m jobs.fleet.worker`) that all pull batches from the
job's work queue; each worker is one ledger session under the job. `alive()` closes the
sessions of workers that are gone (an interrupted instance, a killed process) and says how many
are left; `top_up()` starts replacements while work remains; `stop()` ends every worker and
closes every session: the launcher calls it on success, failure and Ctrl-C alike.

- `aws`: one spot instance per worker, launched through launcher.providers.aws.provider (cheapest
  offer, locked down, dead-man switch, spot watcher). The worker runs in the trainer image; the
  box keeps its own heartbeat while the worker runs and shuts down when the worker exits (the
  queue drained), so a fleet never outlives its work, even if the launcher dies.
- `local`: worker processes on this machine, through the same queue and bucket. For trying
  the fleet path without renting, and the loopback tests; recorded at this machine's running cost.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from launcher.infer.queue import FleetSettings, Queues
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from launcher.providers.aws.provider import AwsProvider


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a job is told."""

    job: str
    bucket: str
    queues: Queues
    settings: FleetSettings
    region: str = ""
    int8: bool = False

    def argv(self) -> list[str]:
        s = self.settings
        args = ["--bucket", self.bucket, "--job", self.job, "--work-url", self.queues.work,
                "--done-url", self.queues.done, "--visibility", str(s.visibility_s),
                "--retry-delay", str(s.retry_delay_s), "--idle-exit", str(s.idle_exit_s),
                "--batch-timeout", str(s.batch_timeout_s)]
        return [*args, "--int8"] if self.int8 else args


class FleetBackend(Protocol):
    description: str
    started: int  # workers started so far (replacements included)
    notes: list[str]  # things to tell the user (e.g. fewer instances than asked); the flow empties it

    def start(self, count: int) -> None: ...

    def alive(self) -> int: ...

    def top_up(self, wanted: int) -> int: ...

    def stop(self, reason: str) -> None: ...


@dataclass
class _Proc:
    proc: subprocess.Popen[bytes]
    session_id: int


@dataclass
class LocalFleet:
    """Worker processes on this machine (see the module docstring)."""

    spec: WorkerSpec
    ledger: Ledger
    log_dir: Path
    usd_per_hour: Decimal
    rules: BillingRules
    gpu: str = "cpu"
    device: str = "cpu"
    description: str = "worker processes on this machine (local fleet)"
    started: int = 0
    procs: list[_Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _one(self) -> None:
        n = self.started
        self.started += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"worker-{n}.log").open("ab")
        argv = [sys.executable, "-m", "jobs.fleet.worker", *self.spec.argv(),
                "--device", self.device, "--name", f"local-{n}"]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        session = self.ledger.record_session(
            NewSession(provider="local", gpu_model=self.gpu, start_at=utcnow(),
                       usd_per_hour=self.usd_per_hour, job_id=self.spec.job,
                       note=f"fleet worker {n}"), self.rules)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        log.close()
        self.procs.append(_Proc(proc, session))

    def start(self, count: int) -> None:
        for _ in range(count):
            self._one()

    def alive(self) -> int:
        left = []
        for p in self.procs:
            code = p.proc.poll()
            if code is None:
                left.append(p)
            else:  # exit 0: the queue drained; anything else: lost (killed, crashed)
                self.ledger.end_session(p.session_id, utcnow(), "completed" if code == 0 else "unknown")
        self.procs = left
        return len(left)

    def top_up(self, wanted: int) -> int:
        missing = max(0, wanted - self.alive())
        self.start(missing)
        return missing

    def stop(self, reason: str) -> None:
        for p in self.procs:
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait()
            self.ledger.end_session(p.session_id, utcnow(), reason)
        self.procs = []


def worker_user_data(spec: WorkerSpec, image: str, region: str) -> str:
    """The job part of an instance's user-data: pull the trainer image (logging in to ECR as the
    train flow does), run the worker in it, keep the box's heartbeat fresh while it runs, and
    power off when it exits (the queue drained)."""
    from launcher.providers.aws.renter import pull_script
    from launcher.providers.aws.userdata import HEARTBEAT_PATH, PID_FILE

    pull = pull_script(image) or f"docker pull {shlex.quote(image)}"
    worker = " ".join(shlex.quote(a) for a in ["docker", "run", "--rm", "--gpus", "all",
                                               "-e", f"AWS_DEFAULT_REGION={region}",
                                               "--entrypoint", "python", image,
                                               "-m", "jobs.fleet.worker", *spec.argv()])
    return (
        "# gpuhire fleet worker: heartbeat while it runs, power off when it is done\n"
        f"{pull}\n"
        f"( while sleep 60; do touch {HEARTBEAT_PATH}; done ) &\n"
        "beat=$!\n"
        f"touch {HEARTBEAT_PATH}\n"
        f"{worker} > /var/log/gpuhire-worker.log 2>&1 &\n"
        f"echo $! > {PID_FILE}\n"
        "wait $!\n"
        "kill $beat\n"
        "shutdown -h now\n"
    )


@dataclass
class AwsFleet:
    """One spot instance per worker (see the module docstring)."""

    spec: WorkerSpec
    aws: AwsProvider
    gpu: str
    image: str
    description: str = "spot instances on AWS"
    started: int = 0
    live: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # what the launcher should tell the user

    def start(self, count: int) -> None:
        from launcher.errors import CapacityError, ConfigError
        from launcher.providers.base import LaunchRequest

        if not self.aws.aws.instance_profile:
            raise ConfigError("the fleet's workers need [aws] instance_profile to read the queue "
                              "and the bucket", "run `gpuhire init --from-terraform DIR` (docs/infer.md)")
        user_data = worker_user_data(self.spec, self.image, self.aws.aws.region)
        for n in range(count):
            offers = tuple(self.aws.offers(self.gpu))
            try:
                launched = self.aws.launch(LaunchRequest(self.spec.job, self.gpu, offers, job_kind="infer",
                                                         extra_user_data=user_data))
            except CapacityError as exc:
                if not self.live:  # not even one worker: the job cannot start
                    raise
                self.notes.append(f"{n} of {count} more instance(s) launched; no capacity for the rest "
                                  f"({exc.message}): going on with {len(self.live)}")
                return
            self.live.add(launched.instance.instance_id)
            self.started += 1

    def alive(self) -> int:
        gone = {i.instance_id for i in self.aws.instances(self.spec.job) if i.state.gone}
        if self.live & gone:
            self.aws.close_sessions(job_id=self.spec.job)  # EC2's reason: spot-interruption, ...
        self.live -= gone
        return len(self.live)

    def top_up(self, wanted: int) -> int:
        missing = max(0, wanted - self.alive())
        self.start(missing)
        return missing

    def stop(self, reason: str) -> None:
        self.aws.release(self.spec.job, reason)
        self.live.clear()
