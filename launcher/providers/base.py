"""The one provider interface: what the train and infer flows ask of any place that runs jobs.

`local` (this machine), `ssh` (a machine you own) and `aws` (spot or on-demand EC2) each
implement `Provider` in one module; `launcher.providers.factory` is the only place that picks
one by name. Adding a provider is one new module and one line in `factory.PROVIDERS`.
Inputs and outputs are frozen dataclasses (`Plan`, `RentRequest`, `JobRef`, `WorkerSpec`), so
an answer can be logged and passed around without anyone changing it behind the caller's back.

    provider.plan()               -> Plan          what would run where, at what price (quote, --dry-run)
    provider.rent(RentRequest)    -> Machine       one machine for one attempt; its ledger session open
    provider.reattach(JobRef)     -> Machine|None  the machine of a job whose launcher died or detached
    provider.trainer_argv(args)   -> [str]         how `python -m jobs.htr ARGS` runs there
    provider.workers(WorkerSpec)  -> Workers       fleet workers for `gpuhire infer` (local, aws)

    machine.host                  -> Host          files and processes on the box
    machine.interrupted(fresh)    -> bool          the provider took (or announced taking) it back
    machine.ship / prepare / keep / release(reason)
    machine.let_go()              -> None          interrupted: leave the machine's end to the provider
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Plan:
    """What a provider would run a job on, and what a quote should count."""

    gpu: str  # the GPU model the job gets: t4, l4, cpu, rtx3060, ...
    market: str  # spot | on-demand (aws) | owned (local, ssh): kept in the run state for `resume`
    description: str  # one line: `--dry-run` and the quote show it before anything is rented
    usd_per_hour: Decimal  # the best current offer, or an owned machine's running cost
    overhead_s: int  # boot and staging seconds a quote adds
    machine: Mapping[str, Any] = field(default_factory=dict)  # kept in the run state for `resume`


@dataclass(frozen=True)
class RentRequest:
    """One attempt of one job."""

    job: str
    attempt: int  # 0 for the first; a relaunch after an interruption counts up


@dataclass(frozen=True)
class JobRef:
    """What a provider needs to find a job's machine again (from the job's run state)."""

    job: str
    session_id: int | None  # the ledger session of the attempt that was running
    machine: Mapping[str, Any] = field(default_factory=dict)  # provider-specific: host name, workdir


class Host(Protocol):
    """The files and processes of the machine that runs the job (this one, or one over SSH)."""

    workdir: str  # the folder the job lives in, on the host

    def put(self, local: Path, remote: str) -> None:
        """Copy a file or folder to the host (resumable where the transport allows)."""

    def get(self, remote: str, local: Path) -> None:
        """Copy a file or folder back from the host."""

    def exists(self, remote: str) -> bool: ...

    def start(self, argv: list[str], log: str, pid_file: str, env: dict[str, str]) -> int:
        """Start a detached process that outlives the launcher's connection; return its pid."""

    def running(self, pid_file: str) -> bool: ...

    def tail(self, remote: str, offset: int) -> tuple[bytes, int]:
        """Bytes of `remote` from `offset` on, and the new offset."""

    def signal(self, pid_file: str, sig: int) -> None: ...

    def heartbeat(self, lease_s: float = 0.0) -> None:
        """Tell the box's dead-man switch the launcher is alive (for `lease_s` more seconds:
        a detached job stays up without a launcher, within the box's maximum lifetime)."""

    def reconnect(self, deadline_s: float) -> None:
        """Make sure the link is up, trying for at most `deadline_s` (SshError if it is not):
        a caller that must also watch something else (the provider) tries in short turns."""

    def close(self) -> None: ...


class Machine(Protocol):
    """One machine rented (or borrowed) for one attempt of a job."""

    @property
    def host(self) -> Host: ...

    @property
    def session_id(self) -> int | None: ...

    @property
    def description(self) -> str: ...

    @property
    def rent_timings(self) -> dict[str, float]:
        """Seconds renting took, by stage (launch until running, SSH connect); {} if one."""

    def interrupted(self, fresh: bool = False) -> bool:
        """True once the provider has announced or carried out an interruption (`fresh`: ask
        the provider now rather than trusting a recent answer)."""

    def ship(self, local: Path, remote: str) -> None:
        """Send the compiled dataset (or other files) to the job's folder on the host."""

    def prepare(self) -> None:
        """Get the runtime ready on the box (docker on AWS: log in to ECR, pull the image)."""

    def keep(self, local: Path, name: str) -> None:
        """Keep a checkpoint just copied home somewhere durable too (S3 on AWS)."""

    def release(self, reason: str) -> None:
        """Stop the job's process, terminate (if rented), close the ledger session with `reason`."""

    def let_go(self) -> None:
        """The provider is taking the machine back (`interrupted()`): stop using it without
        ending it, so the books get the provider's own end (AWS bills a spot instance EC2
        interrupts in its first hour as free, one we terminate as used); the provider ends it
        itself if the take-back does not come. Returns at once (the relaunch does not wait)."""


@dataclass(frozen=True)
class FleetSettings:
    """How the inference queue behaves; [infer] in the config, the tests shorten the times."""

    batch_pages: int = 20  # pages per message: what an interruption can cost, at most
    visibility_s: int = 300  # a batch's lease; the worker's heartbeat extends it every V/3
    max_receives: int = 3  # deliveries before a batch goes to the dead-letter queue
    retry_delay_s: int = 30  # a batch with failed pages comes back after this
    idle_exit_s: int = 120  # a worker that finds no batch this long exits (and its box stops)
    batch_timeout_s: int = 3600  # a worker whose batch takes longer is hung: it exits
    retention_s: int = 4 * 24 * 3600  # SQS keeps unread messages this long


@dataclass(frozen=True)
class Queues:
    """The SQS queue URLs of one inference job."""

    work: str
    dead: str
    done: str


@dataclass(frozen=True)
class WorkerSpec:
    """What every fleet worker of an inference job is told (`python -m jobs.fleet.worker`)."""

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


class Workers(Protocol):
    """N fleet workers pulling batches from one job's queue; each is a ledger session.

    `alive()` closes the sessions of workers that are gone and says how many are left;
    `top_up()` starts replacements while work remains; `stop()` ends every worker and closes
    every session: the infer flow calls it on success, failure and Ctrl-C alike."""

    description: str
    started: int  # workers started so far (replacements included)
    notes: list[str]  # things to tell the user (e.g. fewer instances than asked); the flow empties it

    def start(self, count: int) -> None: ...

    def alive(self) -> int: ...

    def top_up(self, wanted: int) -> int: ...

    def stop(self, reason: str) -> None: ...


class Provider(Protocol):
    """Runs jobs on machines of one kind, and always gives them back. See the module docstring."""

    name: str  # local | ssh | aws: recorded on the job and its run state

    def plan(self) -> Plan:
        """What would be rented, at what price (a quote and `--dry-run` show it)."""

    def rent(self, request: RentRequest) -> Machine:
        """A machine for one attempt, its ledger session open."""

    def reattach(self, job: JobRef) -> Machine | None:
        """The machine of a job whose launcher died or detached, if it is still there."""

    def trainer_argv(self, args: list[str]) -> list[str]:
        """The command that runs `python -m jobs.htr ARGS` on this provider's runtime."""

    def workers(self, spec: WorkerSpec, gpu: str, state_dir: Path) -> Workers:
        """Fleet workers for an inference job on `gpu` (`state_dir`: their logs on this
        machine); SpecError where the provider runs no fleet."""
