"""The sections of the config file, one model each: `[ownership]`, `[cards.NAME]`, `[aws]`, ...

`launcher.config` puts them together into `Settings` (and re-exports them). Every section
forbids unknown keys, so a typo is an error naming the key, never a setting that does nothing.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal

from pydantic import (
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ledger.catalogue import DEFAULT_CARD, RENTED_GPUS
from ledger.settings_model import SETTINGS_CONFIG, no_bool_numbers


def _one_of(names: tuple[str, ...]) -> str:
    """("cpu", "t4", "l4") -> "cpu, t4 or l4"."""
    return " or ".join(filter(None, (", ".join(names[:-1]), names[-1])))


class _Section(BaseModel):
    """A section of the config file (see ledger.settings_model)."""

    model_config = SETTINGS_CONFIG
    refuse_booleans = field_validator("*", mode="before")(no_bool_numbers)


class OwnershipSettings(_Section):
    """[ownership]: the card to compare with and the numbers of the buy signal."""

    # Upper bounds are far past any real value; they keep the sums within Decimal's precision.
    card: str = DEFAULT_CARD  # a built-in card or one from [cards.NAME]
    usd_per_kwh: Decimal = Field(Decimal("0.30"), ge=0, le=100)
    host_w: Decimal = Field(Decimal("60"), ge=0, le=100_000)
    window_months: int = Field(3, ge=1, le=36)
    buy_payback_months: Decimal = Field(Decimal("12"), gt=0, le=1200)  # at most watch's
    watch_payback_months: Decimal = Field(Decimal("24"), gt=0, le=1200)
    resale_fraction: Decimal | None = Field(None, ge=0, lt=1)  # overrides the card's
    lifetime_months: int | None = Field(None, ge=1, le=600)  # overrides the card's

    @model_validator(mode="after")
    def _buy_before_watch(self) -> OwnershipSettings:
        if self.buy_payback_months > self.watch_payback_months:
            raise ValueError(
                f"ownership.buy_payback_months: buy payback {self.buy_payback_months} months is "
                f"above watch payback {self.watch_payback_months} months (buy must be <= watch)"
            )
        return self


class CardSettings(_Section):
    """[cards.NAME]: a card of the user's own."""

    label: str = ""
    price_usd: Decimal = Field(gt=0, le=10_000_000)
    power_w: Decimal = Field(ge=0, le=100_000)
    speed: Decimal = Field(gt=0, le=1000)  # training speed relative to a T4
    resale_fraction: Decimal = Field(Decimal("0.30"), ge=0, lt=1)
    lifetime_months: int = Field(36, ge=1, le=600)


class ProviderSettings(_Section):
    """[providers.NAME]: billing rules of a provider (rent recorded by hand, or overrides).

    Only the keys written replace the provider's built-in rules (ledger/catalogue.py); the
    defaults below are those of a provider without built-in rules."""

    min_billed_s: int = Field(0, ge=0)
    interruption_free_s: int = Field(0, ge=0)
    ebs_usd_per_gb_month: Decimal = Field(Decimal(0), ge=0)
    ipv4_usd_per_hour: Decimal = Field(Decimal(0), ge=0)
    owned: bool = False


class LocalSettings(_Section):
    """[local]: this machine as a provider (training without AWS)."""

    gpu: str = "cpu"  # what the ledger records as the GPU model (cpu, rtx3060, ...)
    watts: Decimal = Field(Decimal("65"), ge=0)  # draw while training: costs its electricity


class HostSettings(_Section):
    """[hosts.NAME]: a machine you own, reached over SSH (the `ssh` provider)."""

    host: str  # address or name
    port: int = Field(22, ge=1, le=65535)
    user: str
    key_path: str  # private login key, 0600
    host_key: str  # "ssh-ed25519 AAAA...": pinned; unknown keys are never accepted
    gpu: str = "cpu"  # what the ledger records (rtx3060, ...)
    watts: Decimal = Field(Decimal("250"), ge=0)  # draw while training: costs its electricity
    python: str = "python3"  # the interpreter with gpuhire's trainer (jobs) installed
    workdir: str = "gpuhire-jobs"  # jobs live in WORKDIR/<job> (relative: in the home folder)


class TrainSettings(_Section):
    """[train]: defaults of `gpuhire train`."""

    provider: str = "auto"  # auto: aws when [aws] is configured (AwsSettings.configured), else local
    preset: str = "default"  # trainer preset: tiny, small, default, large
    # The training engine (`--engine`): crnn (gpuhire's own) or kraken (kraken's recognition
    # trainer); kraken_spec: kraken's VGSL network spec (`--kraken-spec`; None: kraken's default).
    engine: str = "crnn"
    kraken_spec: str | None = None
    epochs: int = Field(50, ge=1)
    max_restarts: int = Field(3, ge=0)  # relaunches after spot interruptions
    lines_per_s: dict[str, float] = {}  # quote throughput per GPU until the ledger measured it
    host: str | None = None  # the [hosts.NAME] the ssh provider uses when --host is not given
    runtime: str = Field("docker", pattern="^(docker|process)$")  # how the trainer runs on aws
    image: str = "gpuhire-htr:latest"  # the trainer image (docker runtime); ECR URL:tag
    remote_python: str = "python3"  # the interpreter on the box (process runtime)
    # GPUs per box (`--gpus`): 1, 2, 4 or 8; N > 1 runs the trainer under torchrun, one process
    # per GPU. gpus_fallback: with no N-GPU capacity, take a box with fewer (8, 4, 2, 1).
    gpus: int = 1
    gpus_fallback: bool = False
    # The quote's N-GPU throughput until the ledger measured it: one GPU's x N x this ** log2(N).
    scaling_per_doubling: float = Field(0.85, gt=0, le=1)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: int) -> int:
        if value not in (1, 2, 4, 8):
            raise ValueError(f"[train] gpus = {value}: use 1, 2, 4 or 8")
        return value

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in ("crnn", "kraken"):
            raise ValueError(f"[train] engine = {value!r}: use crnn or kraken")
        return value


class InferSettings(_Section):
    """[infer]: the planner and the fleet of `gpuhire infer` (docs/infer.md)."""

    coffee_break_minutes: float = Field(15, gt=0)  # the CPU wins if it finishes within this
    lines_per_s: dict[str, float] = {}  # cpu/t4/l4 throughput until measured; cpu here skips calibration
    segment_s_per_page: dict[str, float] = {}  # cpu/t4/l4 layout analysis s/page; measured otherwise
    boot_s: int = Field(300, ge=0)  # per GPU instance: start, image pull, model fetch
    max_instances: int = Field(8, ge=1, le=100)  # the planner's fleet never grows past this
    hours_per_instance: float = Field(2.0, gt=0)  # above this much work, split it over more instances
    fleet: str = Field("aws", pattern="^(aws|local)$")  # where fleet workers run
    batch_pages: int = Field(20, ge=1, le=500)  # pages per queue message: all an interruption can cost
    visibility_s: int = Field(300, ge=2, le=43200)  # a batch's lease; the worker's heartbeat extends it
    max_receives: int = Field(3, ge=1, le=1000)  # tries before a batch goes to the dead-letter queue
    retry_delay_s: int = Field(30, ge=0, le=43200)  # a batch with failed pages comes back after this
    idle_exit_s: int = Field(120, ge=1)  # a worker with nothing to do this long exits (its box stops)
    batch_timeout_s: int = Field(3600, ge=10)  # a batch taking longer is hung: its worker exits

    @field_validator("lines_per_s", "segment_s_per_page")
    @classmethod
    def _rates(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        devices = ("cpu", *RENTED_GPUS)
        for device, rate in value.items():
            if device not in devices or not rate > 0:
                raise ValueError(
                    f"[infer.{info.field_name}] {device!r}: use {_one_of(devices)} with a value above 0"
                )
        return value


class AwsSettings(_Section):
    """[aws]: the AWS provider (docs/aws.md). Credentials come from the standard AWS chain only."""

    region: str = "us-east-1"  # where offers are read and instances launched
    profile: str | None = None  # a named AWS profile; None: the default chain (env, SSO, ...)
    # Instance types per GPU, all one-GPU; offers only ever come from these.
    instance_types: dict[str, list[str]] = {
        "t4": ["g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge"],
        "l4": ["g6.xlarge", "g6.2xlarge", "g6.4xlarge"],
    }
    # Public SSM parameter holding the Deep Learning AMI id (versioned names get retired).
    ami_parameter: str = (
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
    )
    ami_id: str | None = None  # a fixed AMI instead of the SSM parameter
    operator_cidrs: list[str] = []  # who may SSH in; empty: this machine's public address /32
    fallback_on_demand: bool = False  # no spot capacity anywhere: launch on demand instead
    volume_gb: int = Field(100, ge=20, le=16384)  # encrypted gp3 root volume
    deadman_minutes: int = Field(15, ge=2)  # no heartbeat this long: the box shuts down
    max_lifetime_hours: int = Field(24, ge=1)  # the box shuts down after this, whatever happens
    # After a spot notice the launcher leaves the box to EC2 (free in its first hour); still
    # running this many seconds past the notice's time, the launcher terminates it (billed).
    notice_grace_s: int = Field(180, ge=0)
    on_demand_usd_per_hour: dict[str, Decimal] = {}  # per instance type; overrides the table
    ssh_user: str = "ubuntu"  # the AMI's login user
    workdir: str = "gpuhire"  # jobs live in WORKDIR/<job> on the box (relative: the user's home)
    # SSH target overrides ("host:port") per instance id, or "*" for all: bastions, tests.
    ssh_targets: dict[str, str] = {}
    instance_profile: str | None = None  # IAM instance profile for the box (terraform output)
    bucket: str | None = None  # S3 bucket for data/ and jobs/<job>/ staging (terraform output)
    ecr_repository_url: str | None = None  # trainer image repository (terraform output)

    def configured(self) -> bool:
        """Whether AWS is set up for gpuhire: `gpuhire init` wrote the bucket or the instance
        profile. `train --provider auto` picks AWS then, else the local machine."""
        return bool(self.bucket or self.instance_profile)

    @field_validator("operator_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                if "/" not in cidr:  # AWS wants the prefix spelt out
                    raise ValueError(cidr)
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR like 203.0.113.7/32") from None
        return value

    @field_validator("ssh_targets")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        for key, target in value.items():
            host, sep, port = target.rpartition(":")
            if not (host if sep else target) or (sep and not (port.isdigit() and 0 < int(port) < 65536)):
                raise ValueError(f"[aws.ssh_targets] {key!r}: {target!r} is not host or host:port")
        return value

    @field_validator("instance_types")
    @classmethod
    def _types(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for gpu, types in value.items():
            if gpu not in RENTED_GPUS or not types:
                raise ValueError(f"[aws.instance_types] {gpu!r}: use {_one_of(RENTED_GPUS)} with a type list")
        return value
