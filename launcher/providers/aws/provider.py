"""The `aws` provider: a spot (or on-demand) T4/L4 instance per attempt, a spot fleet for inference.

`--gpus N` ([train] gpus): only instance types with N GPUs are offered (launcher/providers/aws/
offers.py), fewer only with `--gpus-fallback` ([train] gpus_fallback); on a box with more than
one GPU the trainer runs under torchrun, one process per GPU (`trainer_argv`).

The instance comes from launcher.providers.aws.cloud (cheapest offer, locked down, dead-man switch,
spot-notice watcher); this module reaches it over SSH with the host key injected at boot and
pinned, ships the job through the `Host` interface, and gives the machine back. Fleet workers
are launcher.providers.aws.fleet.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.errors import ProviderError, SshError
from launcher.output import usd
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.image import PULL_TIMEOUT_S, pull_script, resolve_image
from launcher.providers.aws.offers import MultiGpuError, gpu_counts, on_demand_instead, type_table
from launcher.providers.aws.staging import S3Stage
from launcher.providers.aws.types import LaunchRequest, Market, Offer, SshEndpoint
from launcher.providers.base import JobRef, Plan, RentRequest, WorkerSpec
from launcher.ssh.client import Ssh, SshTarget
from launcher.ssh.host import SshHost
from launcher.ssh.hostkeys import PinnedHostKey
from launcher.train.gpus import torchrun_args
from launcher.train.quote import choose_gpu, per_speed_seconds
from ledger.catalogue import BUILTIN_SPEEDS, RENTED_GPUS
from ledger.timeutil import as_utc

if TYPE_CHECKING:
    from launcher.providers.aws.fleet import AwsFleet

BOOT_AND_STAGE_S = 300  # instance start, SSH up, data shipped: added to every quote
PRICE_REFRESH_S = 600.0  # look for a new spot price this often while a job runs
_BOX_USER = "GPUHIRE_BOX_UID_GID"  # placeholder for "$(id -u):$(id -g)" in the docker command
# Ask EC2 (DescribeInstances) whether it took the box at most this often; the box's own
# two-minute notice file is read at every poll. A 0.5 s poll would otherwise be 7,200 API
# calls an hour per job, against the account's request rate.
PROVIDER_CHECK_S = 15.0


def _target(endpoint: SshEndpoint, deadline_s: float) -> SshTarget:
    return SshTarget(host=endpoint.host, port=endpoint.port, user=endpoint.user,
                     key_path=endpoint.key_path, host_key=PinnedHostKey.parse(endpoint.host_key),
                     deadline_s=deadline_s,
                     # the box swaps in the injected key early in boot: retry a mismatch (never
                     # accepting it) for a while rather than failing the first connect
                     host_key_grace_s=min(300.0, deadline_s))


@dataclass
class AwsMachine:
    """One instance for one attempt of a job."""

    provider: AwsCloud
    job: str
    instance_id: str
    session_id: int | None
    host: SshHost
    notice_path: str
    description: str
    stage: S3Stage | None = None  # data and checkpoints through S3 when [aws] bucket is set
    setup: str | None = None  # shell run on the box before the job starts (ECR login + pull)
    rent_timings: dict[str, float] = field(default_factory=dict)  # launch until running, SSH
    _priced: float = field(default_factory=time.monotonic)
    _asked: float = -PROVIDER_CHECK_S  # when EC2 was last asked (monotonic)
    notice_at: datetime | None = None  # when EC2 said it takes the box (the notice's `time`)

    def ship(self, local: Path, remote: str) -> None:
        """The dataset through S3 (content-hashed: unchanged data is not sent again), fetched
        on the box from presigned URLs; everything else, or without a bucket, over SFTP."""
        if self.stage is None or remote != "dataset":
            self.host.put(local, remote)
            return
        staged = self.stage.put_dataset(local)
        script = self.stage.fetch_script(staged, f"{self.host.workdir}/{remote}")
        done = self.host.ssh.run(script, timeout_s=3600.0)
        if done.exit_status != 0:
            raise ProviderError(
                f"the box could not fetch the data from S3: {done.stderr.decode(errors='replace')[-300:]}",
                "check the box can reach S3 (its subnet's route or endpoint)",
            )

    def prepare(self) -> None:
        """Get the runtime ready: log in to ECR and pull the trainer image (docker runtime)."""
        if not self.setup:
            return
        done = self.host.ssh.run(self.setup, timeout_s=PULL_TIMEOUT_S)
        if done.exit_status != 0:
            why = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
            raise ProviderError(
                f"the box could not pull the trainer image: {why}",
                "check [train] image was pushed to ECR and the instance profile may pull it "
                "(terraform's ecr:GetAuthorizationToken and BatchGetImage)",
            )

    def keep(self, local: Path, name: str) -> None:
        """A checkpoint just copied home also goes to S3."""
        if self.stage is not None:
            self.stage.put_checkpoint(self.job, local, name)

    def interrupted(self, fresh: bool = False) -> bool:
        """EC2 took the instance (state reason), or the box's watcher saw the 2-minute notice.

        EC2 is asked at most every PROVIDER_CHECK_S (`fresh`: now); the notice file is read
        only over a live link, never waiting for a reconnect (the caller reconnects in short
        turns and asks again). Also stores a new spot price when it changed (costs are
        piecewise over price points).
        """
        now = time.monotonic()
        try:
            if self.session_id is not None and now - self._priced > PRICE_REFRESH_S:
                self._priced = now
                self.provider.refresh_price(self.session_id)
            if fresh or now - self._asked >= PROVIDER_CHECK_S:
                self._asked = now
                self.provider.reclaim(self.job)  # an earlier attempt's box EC2 was to take
                if self.provider.interruption(self.instance_id) is not None:
                    return True
        except ProviderError:
            pass  # AWS unreachable for a moment: the notice file, or the next check, decides
        if not self.host.ssh.connected:
            return False
        try:
            return self._read_notice()
        except SshError:  # the box may be going: EC2's word above decides
            return False

    def _read_notice(self) -> bool:
        """Whether the box's watcher wrote a notice; keeps its `time` (AWS gives two minutes:
        a notice that cannot be read counts from now)."""
        if self.notice_at is not None:
            return True
        if not self.host.exists(self.notice_path):
            return False
        data, _ = self.host.tail(self.notice_path, 0)
        try:
            self.notice_at = as_utc(datetime.fromisoformat(json.loads(data)["time"].replace("Z", "+00:00")))
        except (ValueError, KeyError, TypeError, AttributeError):
            self.notice_at = self.provider.now() + timedelta(seconds=120)
        return True

    def let_go(self) -> None:
        """EC2 is taking the box back: stop using it and leave its end to EC2 (free within
        the first instance-hour), the launcher ending it only [aws] notice_grace_s after the
        notice's time (reclaim.py). Returns at once: the relaunch does not wait for it."""
        try:
            if self.host.ssh.connected and self.notice_at is None:
                self._read_notice()  # the job may have stopped before the notice was read
        except SshError:
            pass
        finally:
            try:
                self.host.close()
            finally:  # without a notice (the job stopped on its own), ended at once
                self.provider.let_go(self.job, self.instance_id, self.notice_at)

    def release(self, reason: str) -> None:
        """End the job's boxes; one EC2 gave notice on is left to EC2 until its deadline."""
        try:
            if self.notice_at is not None:
                self.provider.let_go(self.job, self.instance_id, self.notice_at)
            self.host.close()
        finally:
            self.provider.release(self.job, reason)


class AwsProvider:
    """Rents the cheapest suitable instance for each attempt of a job."""

    name = "aws"

    def __init__(self, aws: AwsCloud, gpu: str, *, spot: bool = True,
                 runtime: str = "docker", image: str = "gpuhire-htr:latest",
                 python: str = "python3", ssh_deadline_s: float = 600.0,
                 workdir_root: str = "gpuhire", stage: S3Stage | None = None,
                 ecr_repository_url: str | None = None, gpus: int | None = None,
                 gpus_fallback: bool | None = None) -> None:
        self.aws = aws
        train = aws.settings.train
        self.gpus = train.gpus if gpus is None else gpus  # GPUs per box asked for
        self.gpus_fallback = train.gpus_fallback if gpus_fallback is None else gpus_fallback
        self.per_doubling = train.scaling_per_doubling
        self.box_gpus = self.gpus  # GPUs of the box rented last (fewer after --gpus-fallback)
        self.spot = spot
        self.runtime = runtime
        self.image = resolve_image(image, ecr_repository_url)
        self.setup = pull_script(self.image) if runtime == "docker" else None
        self.python = python
        self.ssh_deadline_s = ssh_deadline_s
        self.workdir_root = workdir_root  # jobs live in ROOT/<job> on the box (relative: home)
        self.stage = stage
        self._offers: dict[str, list[Offer]] = {}
        self.gpu = self._choose(gpu)

    @property
    def market(self) -> str:
        return "spot" if self.spot else "on-demand"

    def offers(self, gpu: str) -> list[Offer]:
        """Offers for `gpu` on boxes of `gpus` GPUs, best first: spot (or on-demand with
        --on-demand); with no spot price anywhere, on-demand when the policy ([aws]
        fallback_on_demand) allows. With --gpus-fallback the boxes with fewer GPUs follow
        (after N GPUs on demand, when that is allowed: the GPU count matters more)."""
        if gpu not in self._offers:
            counts = gpu_counts(self.gpus, self.gpus_fallback)
            found: list[Offer] = []
            missing: MultiGpuError | None = None
            for count in counts:
                try:
                    found += self._offers_of(gpu, count, with_on_demand=len(counts) > 1)
                except MultiGpuError as exc:  # e.g. 2 GPUs: fewer may still be had
                    missing = missing or exc
            if missing is not None and not found:
                raise missing
            if not found:
                fix = ("try another --gpu or [aws] region, or --on-demand / [aws] fallback_on_demand"
                       if self.spot else "try another --gpu or [aws] region")
                boxes = f"{self.gpus}-GPU " if self.gpus > 1 else ""
                raise ProviderError(f"no {boxes}{gpu.upper()} {self.market} offers in {self.aws.aws.region}",
                                    fix + (", or --gpus-fallback" if self.gpus > 1 and not self.gpus_fallback
                                           else ""))
            self._offers[gpu] = found
        return self._offers[gpu]

    def _offers_of(self, gpu: str, count: int, with_on_demand: bool) -> list[Offer]:
        if not self.spot:
            return self.aws.on_demand_offers(gpu, count)
        found = self.aws.offers(gpu, count)
        if self.aws.aws.fallback_on_demand and (with_on_demand or not found):
            found += self.aws.on_demand_offers(gpu, count)
        return found

    def plan(self) -> Plan:
        return Plan(self.gpu, self.market, self._describe(), self.offers(self.gpu)[0].usd_per_hour,
                    BOOT_AND_STAGE_S, machine={"gpus": self.gpus})

    def _describe(self) -> str:
        """The offer a launch tries first, e.g. `spot g4dn.xlarge (4 vCPUs) in us-east-1b at
        $0.1800/h (on-demand $0.526/h); 3 more offers to fall back on`."""
        offers = self.offers(self.gpu)
        o = offers[0]
        gpus = f"{o.gpu_count}x {o.gpu.upper()}, " if o.gpu_count > 1 else ""
        text = (f"{o.market} {o.instance_type} ({gpus}{o.vcpus} vCPUs) in {o.zone} at "
                f"{usd(o.usd_per_hour, 4)}/h")
        if o.market == Market.spot:
            text += f" (on-demand {usd(o.on_demand_usd_per_hour, 3)}/h)"
        if len(offers) > 1:
            text += f"; {len(offers) - 1} more offer(s) to fall back on"
        if o.market == Market.spot and self.aws.aws.fallback_on_demand:
            text += ", then on-demand"
        if self.gpus > 1:
            text += "; the trainer under torchrun, one process per GPU"
        return text + f"; {self.runtime} runtime" + (f" ({self.image})" if self.runtime == "docker" else "")

    def _choose(self, gpu: str) -> str:
        """`auto`: among the GPU types with an offer, the lowest price per unit of training
        speed now (launcher.train.quote.choose_gpu; the train flow chooses again for its job's
        size and lines); a type without an offer is skipped and named in the plan."""
        if gpu not in ("auto", ""):
            return gpu.lower()
        self.gpu_choice = choose_gpu(
            RENTED_GPUS, lambda g: self.offers(g)[0].usd_per_hour,
            per_speed_seconds(BUILTIN_SPEEDS, self.gpus, self.per_doubling),
            alternatives=lambda: on_demand_instead(self.aws.on_demand_offers, RENTED_GPUS,
                                                   self.aws.aws.region) if self.spot else "")
        return self.gpu_choice.gpu

    def trainer_argv(self, args: list[str]) -> list[str]:
        """`python -m jobs.htr ARGS` on the box; on a box of N > 1 GPUs under torchrun, one
        process per GPU (`--standalone`: its rendezvous on a free local port)."""
        n = self.box_gpus
        module = ["-m", "jobs.htr"] if n <= 1 else torchrun_args(n)
        if self.runtime == "process":
            return [*shlex.split(self.python), *module, *args]
        # The HTR trainer image on the Deep Learning AMI; the job folder is mounted as /work and
        # the trainer runs as the SSH user (the folder's owner), whose ids only the box knows:
        # a shell on the box fills them in, then becomes docker (exec: the pid stays the job's).
        # --gpus all: every GPU of the box; --ipc host: the host's /dev/shm, which N ranks'
        # data loaders and NCCL share (docker's default 64 MB is too little for them).
        entry = [] if n <= 1 else ["--entrypoint", "python"]
        rest = args if n <= 1 else [*module, *args]
        docker = ["docker", "run", "--rm", "--gpus", "all", "--ipc", "host", "--user", _BOX_USER,
                  "-v", "{workdir}:/work", "-w", "/work", "-e", "GPUHIRE_JOB", *entry, self.image,
                  *rest]
        return ["sh", "-c", "exec " + shlex.join(docker).replace(_BOX_USER, '"$(id -u):$(id -g)"')]

    def _machine(self, job: str, instance_id: str, session_id: int | None,
                 endpoint: SshEndpoint) -> AwsMachine:
        ssh = Ssh(_target(endpoint, self.ssh_deadline_s)).connect()
        host = SshHost(ssh, f"{self.workdir_root}/{job}", heartbeat_path=endpoint.heartbeat_path,
                       pid_mirror=endpoint.pid_file)
        return AwsMachine(self.aws, job, instance_id, session_id, host, endpoint.notice_path,
                          f"{instance_id} ({endpoint.host}, aws)", self.stage, self.setup)

    def rent(self, request: RentRequest) -> AwsMachine:
        job = request.job
        offers = list(self.offers(self.gpu))
        self._offers.pop(self.gpu, None)  # fresh prices for the next attempt
        t = time.monotonic()
        launched = self.aws.launch(LaunchRequest(job, self.gpu, tuple(offers), gpus=self.gpus))
        self.box_gpus = launched.offer.gpu_count  # the trainer runs one process per GPU it has
        running = time.monotonic()  # EC2 says running: the launcher's overhead starts here
        try:
            machine = self._machine(job, launched.instance.instance_id, launched.session_id,
                                    launched.ssh)
        except BaseException:
            self.aws.release(job, "user")  # never leave an unreachable machine running
            raise
        machine.rent_timings = {"launch until running": running - t,
                                "ssh connect": time.monotonic() - running}
        return machine

    def reattach(self, job: JobRef) -> AwsMachine | None:
        alive = [i for i in self.aws.instances(job.job) if not i.state.gone]
        if not alive:
            self.aws.close_sessions(job_id=job.job)  # record how the old ones ended
            return None
        instance = alive[0]
        known = type_table(gpus=None).get(instance.instance_type)
        self.box_gpus = known.gpus if known is not None else self.box_gpus
        return self._machine(job.job, instance.instance_id, job.session_id,
                             self.aws.ssh_endpoint(instance))

    def workers(self, spec: WorkerSpec, gpu: str, state_dir: Path) -> AwsFleet:
        from launcher.providers.aws.fleet import AwsFleet

        return AwsFleet(spec, self.aws, gpu, self.image)
