"""What the AWS layer (launcher.providers.aws.cloud) takes and gives: frozen dataclasses.

A provider's answer can be logged, compared and passed around without anyone changing it
behind the caller's back. The life of one instance:

    AwsCloud.offers(gpu)            -> [Offer, ...]            cheapest first
    AwsCloud.launch(LaunchRequest)  -> Launched                ledger session written BEFORE the launch call
    AwsCloud.ssh_endpoint(instance) -> SshEndpoint             host, user, key file, pinned host key
    AwsCloud.describe(instance_id)  -> Instance                state, and end reason once it is gone
    AwsCloud.interruption(id)       -> InterruptionNotice|None EC2's word that it took the machine
    AwsCloud.release(job, reason)   -> [Instance]              terminate, close the session, drop key and SG
    AwsCloud.instances(job=None)    -> [Instance]              everything it runs for gpuhire (by tag)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path


class Market(StrEnum):
    spot = "spot"
    on_demand = "on-demand"


class InstanceState(StrEnum):
    """The life of a rented machine, as the provider reports it."""

    pending = "pending"
    running = "running"
    stopping = "stopping"
    stopped = "stopped"
    shutting_down = "shutting-down"
    terminated = "terminated"
    unknown = "unknown"

    @property
    def gone(self) -> bool:
        """No longer billed for compute (terminated, or on its way there)."""
        return self in (InstanceState.terminated, InstanceState.shutting_down)


# Ledger end reasons (ledger.costs.END_REASONS) an instance can end with.
END_SPOT_INTERRUPTION = "spot-interruption"  # the provider took it back (spot)
END_USER = "user"  # we (or the user) terminated it
END_UNKNOWN = "unknown"  # gone for a reason nobody recorded (e.g. dead-man switch, gc)

# EC2's StateReason codes, in its own words: who ended the instance decides who pays
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/billing-for-interrupted-spot-instances.html).
SPOT_TERMINATION = "Server.SpotInstanceTermination"  # EC2 took it back: free in the first hour
USER_SHUTDOWN = "Client.UserInitiatedShutdown"  # TerminateInstances (us, the user, gc): billed
_EC2_REASONS = {SPOT_TERMINATION: END_SPOT_INTERRUPTION, USER_SHUTDOWN: END_USER}


def end_reason_for(code: str) -> str:
    """The ledger end reason of a gone instance from EC2's StateReason code; anything else
    (the box shut itself down, no reason given) is unknown."""
    return _EC2_REASONS.get(code, END_UNKNOWN)


def refine_reason(ec2_reason: str | None, caller_reason: str | None) -> str:
    """The end reason a session is closed with: EC2's own word, which the caller may only
    refine where EC2 said no more than "user" or nothing (`completed`, say, for a job that
    finished). Only EC2 can call an end a spot interruption: a caller's `spot-interruption`
    never replaces EC2's user or unknown, since AWS bills an instance someone terminated."""
    if ec2_reason in (None, END_UNKNOWN, END_USER) and caller_reason not in (None, END_SPOT_INTERRUPTION):
        return str(caller_reason)
    return ec2_reason or END_UNKNOWN


@dataclass(frozen=True)
class Offer:
    """One way to get a GPU: a zone, an instance type, a market and its price now."""

    provider: str
    region: str
    zone: str  # availability zone; "" where the provider has none
    instance_type: str
    gpu: str  # t4 | l4
    gpu_count: int  # GPUs of that kind in the instance (`--gpus N`)
    vcpus: int  # enough vCPUs keep the data loader ahead of the GPU: the tie-breaker
    memory_gib: int
    market: Market
    usd_per_hour: Decimal  # the price in force for this market now
    on_demand_usd_per_hour: Decimal  # for comparison (and the fallback market)
    price_at: datetime | None  # when the spot price point took effect; None for table prices
    source: str  # where the price came from: "describe_spot_price_history", table source, "config"


@dataclass(frozen=True)
class LaunchRequest:
    """What to launch for which job. The provider tries `offers` in order (capacity fallback)."""

    job_id: str
    gpu: str
    offers: tuple[Offer, ...]  # preference order; usually offers(gpu) as returned
    volume_gb: int | None = None  # root volume for image + data + checkpoints; None: [aws] volume_gb
    allow_on_demand: bool | None = None  # None: the configured policy ([aws] fallback_on_demand)
    max_lifetime_s: int | None = None  # None: the configured [aws] max_lifetime_hours
    extra_user_data: str = ""  # shell lines run after the safety scripts are in place
    job_kind: str = "train"  # train | infer: the ledger job row made if none exists
    gpus: int = 1  # GPUs per instance the on-demand fallback offers (the offers carry their own)


@dataclass(frozen=True)
class SshEndpoint:
    """How to reach a launched machine over SSH. The host key is pinned, never learnt."""

    host: str
    port: int
    user: str
    key_path: Path  # private key (0600) in the user's data directory
    host_key: str  # "ssh-ed25519 AAAA...": the only key the client may accept
    heartbeat_path: str  # `touch` this on the box so the dead-man switch stays quiet
    pid_file: str  # the job writes its pid here; the spot-notice watcher signals it
    notice_path: str  # the spot watcher writes the two-minute notice here (JSON), if one came


@dataclass(frozen=True)
class Instance:
    """A machine as the provider sees it now (found by the gpuhire:job tag)."""

    provider: str
    instance_id: str
    job_id: str | None
    region: str
    zone: str
    instance_type: str
    market: Market
    state: InstanceState
    launched_at: datetime | None
    public_ip: str | None = None
    state_reason: str = ""  # the provider's code, e.g. Server.SpotInstanceTermination
    end_reason: str | None = None  # ledger end reason once gone; None while alive
    ended_at: datetime | None = None  # when it went (from the provider), if known
    session_id: int | None = None  # the ledger session it was launched for (from its tag)
    owner: str = ""  # the gpuhire:owner tag: the IAM identity that launched it


@dataclass(frozen=True)
class InterruptionNotice:
    """The provider announced (or carried out) taking the machine back."""

    instance_id: str
    action: str  # terminate | stop | hibernate
    at: datetime | None  # when it happens / happened
    source: str  # "state-reason" (after the fact) or "imds" (the two-minute notice)


@dataclass(frozen=True)
class Attempt:
    """One try at launching an offer (also stored as a ledger LaunchAttempt row)."""

    zone: str
    instance_type: str
    market: Market
    outcome: str  # launched | capacity | error | skipped (no subnet in the zone)
    error_code: str = ""
    message: str = ""


@dataclass(frozen=True)
class Launched:
    """A launch that succeeded: the machine, its ledger session, and how we got there."""

    instance: Instance
    session_id: int
    offer: Offer  # the offer that got capacity (market may be on-demand after fallback)
    ssh: SshEndpoint
    attempts: tuple[Attempt, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Leftover:
    """Something gpuhire made that no live job owns any more (found by `gc`)."""

    kind: str  # instance | key-pair | security-group | session
    ident: str  # instance id, key name, group id, or ledger session id
    job_id: str | None
    detail: str = ""
