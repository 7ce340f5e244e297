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
    [compare]
    price_per_page = "0.05425"

The sections' models are in `launcher.config_sections`, the messages for bad values in
`launcher.config_messages`; docs/config.md is the user's guide.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from launcher.config_messages import describe, describe_bad_json, describe_env, describe_flag
from launcher.config_sections import (
    AwsSettings,
    CardSettings,
    HostSettings,
    InferSettings,
    LocalSettings,
    OwnershipSettings,
    ProviderSettings,
    TrainSettings,
)
from ledger.alerts.config import AlertsSettings, ReportSettings
from ledger.catalogue import (
    BUILTIN_CARDS,
    BUILTIN_PROVIDERS,
    BUILTIN_SPEEDS,
    DEFAULT_RULES,
    BillingRules,
    CardProfile,
)
from ledger.compare import CompareSettings
from ledger.errors import ConfigError, NotFoundError
from ledger.ownership import OwnershipParams

__all__ = [  # the sections are defined in launcher/config_sections.py and importable from here
    "AwsSettings",
    "CardSettings",
    "CompareSettings",
    "HostSettings",
    "InferSettings",
    "LocalSettings",
    "OwnershipSettings",
    "ProviderSettings",
    "Settings",
    "TrainSettings",
    "default_config_path",
    "load_settings",
    "read_config_file",
]


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
    compare: CompareSettings = CompareSettings()  # [compare]: a commercial per-page price (docs/config.md)


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
        # flags (init) > GPUHIRE_* > config file; load_settings merges the file into init's values.
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
        raise ConfigError(describe(exc, f"in {path}")) from None
    try:
        env = Settings()  # GPUHIRE_* variables only (no file, no flags)
    except ValidationError as exc:
        raise ConfigError(describe_env(exc)) from None
    except SettingsError as exc:  # a table variable that is not JSON: GPUHIRE_OWNERSHIP='{bad'
        raise ConfigError(describe_bad_json(exc)) from None
    merged = _merge(_merge(file_values, env.model_dump(exclude_unset=True)), flag_values)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(describe_flag(exc, flag_names or {})) from None
