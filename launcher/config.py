"""Settings: flags, then `GPUHIRE_*` variables, then the TOML config file, then defaults.

The config file is `config.toml` in the user's config directory (`--config`/`GPUHIRE_CONFIG`
name another). Unknown keys are rejected with the key's dotted name, so a typo never silently
does nothing. Nested keys map to variables with `__`: `[ownership] card` is
`GPUHIRE_OWNERSHIP__CARD`. Example:

    db = "postgresql://ledger@db.example.org/gpuhire"
    [ownership]
    card = "rtx4060ti"
    usd_per_kwh = "0.25"
    [cards.a6000]
    label = "RTX A6000 48 GB"
    price_usd = "4650"
    power_w = "300"
    speed = "3.0"
    [speeds]
    a100 = "4.5"
    [providers.runpod]
    min_billed_s = 0
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ledger.alerts.config import AlertsSettings, ReportSettings
from ledger.catalogue import (
    BUILTIN_CARDS,
    BUILTIN_PROVIDERS,
    BUILTIN_SPEEDS,
    DEFAULT_CARD,
    DEFAULT_RULES,
    BillingRules,
    CardProfile,
)
from ledger.errors import ConfigError, NotFoundError
from ledger.ownership import OwnershipParams


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    provider: str = "auto"  # auto: aws when [aws] is configured, else local
    preset: str = "default"  # trainer preset: tiny, small, default, large
    epochs: int = Field(50, ge=1)
    max_restarts: int = Field(3, ge=0)  # relaunches after spot interruptions
    lines_per_s: dict[str, float] = {}  # quote throughput per GPU until the ledger measured it
    host: str | None = None  # the [hosts.NAME] the ssh provider uses when --host is not given
    runtime: str = Field("docker", pattern="^(docker|process)$")  # how the trainer runs on aws
    image: str = "gpuhire-htr:latest"  # the trainer image (docker runtime); ECR URL:tag
    remote_python: str = "python3"  # the interpreter on the box (process runtime)


class InferSettings(_Section):
    """[infer]: the planner and the fleet of `gpuhire infer` (docs/infer.md)."""

    coffee_break_minutes: float = Field(15, gt=0)  # the CPU wins if it finishes within this
    lines_per_s: dict[str, float] = {}  # cpu/t4/l4 throughput until measured; cpu here skips calibration
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

    @field_validator("lines_per_s")
    @classmethod
    def _rates(cls, value: dict[str, float]) -> dict[str, float]:
        for device, rate in value.items():
            if device not in ("cpu", "t4", "l4") or not rate > 0:
                raise ValueError(f"[infer.lines_per_s] {device!r}: use cpu, t4 or l4 with a rate above 0")
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
    on_demand_usd_per_hour: dict[str, Decimal] = {}  # per instance type; overrides the table
    ssh_user: str = "ubuntu"  # the AMI's login user
    # SSH target overrides ("host:port") per instance id, or "*" for all: bastions, tests.
    ssh_targets: dict[str, str] = {}
    instance_profile: str | None = None  # IAM instance profile for the box (terraform output)
    bucket: str | None = None  # S3 bucket for data/ and jobs/<job>/ staging (terraform output)
    ecr_repository_url: str | None = None  # trainer image repository (terraform output)

    @field_validator("operator_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

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
            if gpu not in ("t4", "l4") or not types:
                raise ValueError(f"[aws.instance_types] {gpu!r}: use t4 or l4 with a type list")
        return value


class _Fields(BaseModel):
    """Every key of the config; validated alone, this is the config file and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    db: str | None = None  # SQLAlchemy URL; default SQLite in the user's data directory
    ownership: OwnershipSettings = OwnershipSettings()
    cards: dict[str, CardSettings] = {}
    speeds: dict[str, Annotated[Decimal, Field(gt=0, le=1000)]] = {}  # [speeds]: rented GPUs vs a T4
    providers: dict[str, ProviderSettings] = {}
    local: LocalSettings = LocalSettings()
    hosts: dict[str, HostSettings] = {}
    train: TrainSettings = TrainSettings()
    aws: AwsSettings = AwsSettings()
    infer: InferSettings = InferSettings()
    alerts: AlertsSettings = AlertsSettings()  # [alerts]: rules and channels (docs/alerts.md)
    report: ReportSettings = ReportSettings()  # [report]: card and mailing (docs/reports.md)


class Settings(BaseSettings, _Fields):
    """Everything configurable. Sections are added by the features that read them."""

    model_config = SettingsConfigDict(
        env_prefix="GPUHIRE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # flags (init) > GPUHIRE_* > config file; the file arrives through init as `_file`.
        return (init_settings, env_settings)

    # -- resolved views -------------------------------------------------------------------
    def card(self, name: str | None = None) -> CardProfile:
        """A card profile by name (default: [ownership] card), with ownership overrides."""
        wanted = (name or self.ownership.card).lower()
        cards = self.all_cards()
        if wanted not in cards:
            raise NotFoundError(
                f"unknown card {wanted!r}",
                f"choose one of {', '.join(sorted(cards))} or add [cards.{wanted}] to the config",
            )
        card = cards[wanted]
        updates: dict[str, Any] = {}
        if self.ownership.resale_fraction is not None:
            updates["resale_fraction"] = self.ownership.resale_fraction
        if self.ownership.lifetime_months is not None:
            updates["lifetime_months"] = self.ownership.lifetime_months
        if updates:
            from dataclasses import replace

            card = replace(card, **updates)
        return card

    def all_cards(self) -> dict[str, CardProfile]:
        cards = dict(BUILTIN_CARDS)
        for name, c in self.cards.items():
            cards[name.lower()] = CardProfile(
                name=name.lower(), label=c.label or name, price_usd=c.price_usd,
                power_w=c.power_w, speed=c.speed, resale_fraction=c.resale_fraction,
                lifetime_months=c.lifetime_months, source="config", as_of="",
            )
        return cards

    def ownership_params(self) -> OwnershipParams:
        speeds = dict(BUILTIN_SPEEDS)
        speeds.update({k.lower(): v for k, v in self.speeds.items()})
        o = self.ownership
        return OwnershipParams(
            usd_per_kwh=o.usd_per_kwh, host_w=o.host_w, window_months=o.window_months,
            buy_payback_months=o.buy_payback_months,
            watch_payback_months=o.watch_payback_months, speeds=speeds,
        )

    def billing_rules(self, provider: str) -> BillingRules:
        """The provider's built-in rules (or the per-second default), with only the keys its
        `[providers.NAME]` section sets replaced: `ebs_usd_per_gb_month` alone keeps AWS's
        60 s minimum, free first-hour interruption and IPv4 rate."""
        name = provider.lower()
        rules = BUILTIN_PROVIDERS.get(name, DEFAULT_RULES)
        for key, section in self.providers.items():
            if key.lower() == name:
                from dataclasses import replace

                rules = replace(rules, **{k: getattr(section, k) for k in section.model_fields_set})
        return rules


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("gpuhire")) / "config.toml"


def read_config_file(path: Path | None) -> tuple[Path, dict[str, Any]]:
    """Read the TOML file; a missing default file is empty, a missing named one an error."""
    explicit = path is not None
    target = path or default_config_path()
    if not target.exists():
        if explicit:
            raise ConfigError(
                f"config file {target} does not exist",
                "fix --config / GPUHIRE_CONFIG or create the file (see docs/config.md)",
            )
        return target, {}
    try:
        with target.open("rb") as fh:
            return target, tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {target} is not valid TOML ({exc})", "fix that line") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {target} is not UTF-8 text (byte {exc.start})", "save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {target}: {exc.strerror}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(
    config_path: Path | None = None, flag_names: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Settings from flags (non-None values), then GPUHIRE_* variables, then the file.

    `flag_names` maps dotted config keys (`ownership.window_months`, or a section such as
    `speeds`) to the flag that set them, so a bad flag value is reported by its flag name."""
    path, file_values = read_config_file(config_path)
    flag_values = {k: v for k, v in flags.items() if v is not None}
    try:  # the file alone first (no GPUHIRE_* variables): its errors name the file
        _Fields.model_validate(file_values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"in {path}")) from None
    try:
        env = Settings()  # GPUHIRE_* variables only (no file, no flags)
    except ValidationError as exc:
        raise ConfigError(_describe_env(exc)) from None
    except SettingsError as exc:  # a table variable that is not JSON: GPUHIRE_OWNERSHIP='{bad'
        raise ConfigError(_describe_bad_json(exc)) from None
    merged = _merge(_merge(file_values, env.model_dump(exclude_unset=True)), flag_values)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_flag(exc, flag_names or {})) from None


def _env_variable(key: str) -> str:
    """The GPUHIRE_* variable that set a dotted key: the most specific one that is set
    (`GPUHIRE_OWNERSHIP__WINDOW_MONTHS`, else the table `GPUHIRE_OWNERSHIP` as JSON)."""
    parts = key.split(".") if key else []
    set_names = {name.upper(): name for name in os.environ}
    for n in range(len(parts), 0, -1):
        wanted = "GPUHIRE_" + "__".join(parts[:n]).upper()
        if wanted in set_names:
            return set_names[wanted]
    return "GPUHIRE_" + "__".join(parts).upper() if parts else "a GPUHIRE_* variable"


def _describe_env(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    variable = _env_variable(key)
    if first["type"] == "extra_forbidden":
        return (f"environment variable {variable} sets unknown config key {key!r}; "
                "unset it or fix its spelling (docs/config.md)")
    shown = f" (config key {key!r})" if variable != "GPUHIRE_" + key.replace(".", "__").upper() else ""
    return f"environment variable {variable}{shown}: {msg}; fix or unset it (docs/config.md)"


def _describe_bad_json(exc: SettingsError) -> str:
    found = re.search(r'field "([^"]+)"', str(exc))
    variable = _env_variable(found.group(1)) if found else "a GPUHIRE_* variable"
    return (f"environment variable {variable} is not valid JSON (a table is written as JSON, "
            f"e.g. '{{\"card\": \"rtx3060\"}}'); fix or unset it, or set one key with "
            f"{variable}__KEY (docs/config.md)")


def _describe_flag(exc: ValidationError, flag_names: Mapping[str, str]) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    section, _, item = key.rpartition(".")
    value = first.get("input")
    shown = f" {value}" if isinstance(value, str | int | float | Decimal) else ""
    flag = flag_names.get(key)
    if flag is None and section in flag_names:  # a table flag such as --speed GPU=FACTOR
        flag, shown = flag_names[section], f" {item}={value}"
    if flag is None:
        return _describe(exc, "in a flag")
    return f"{flag}{shown}: {msg}; give another value (see --help)"


def _describe(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    key = key or "(top level)"
    if first["type"] == "union_tag_invalid":  # [alerts] rule or channel of an unknown type
        key += ".type"
    if first["type"] == "extra_forbidden":
        return f"unknown config key {key!r} {where}; remove it or fix its spelling (docs/config.md)"
    return f"config key {key!r} {where}: {msg}; fix its value (docs/config.md)"


def _alert_key(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    """The dotted key of an error, without pydantic's union tags ([alerts] rules and channels
    are tagged by `type`); a cross-field check names its own key as `key: message`."""
    parts = [str(p) for i, p in enumerate(loc)
             if not (i >= 2 and loc[i - 2] in ("rules", "channels") and loc[0] == "alerts")]
    msg = msg.removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if sep and head.startswith(("alerts.", "ownership.")) and " " not in head:
        return head, rest
    return ".".join(parts), msg
