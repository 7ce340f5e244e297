"""Alert rules, channels and report mailing as config models (TOML `[alerts]`, `[report]`).

The launcher's `Settings` holds these sections; they live here so that `ledger.alerts` can be
used without the launcher. Every rule has its own thresholds; unknown rule types, bad
thresholds and unknown channel names are rejected when the config is read, naming the key.
Secrets never sit in the file: a channel names the environment variables that hold them.

    [[alerts.rules]]
    name = "budget"                 # unique; alerts are remembered per rule, period, channel
    type = "monthly_budget"
    budget_usd = "200"
    levels_pct = [50, 80, 100]
    channels = ["console", "mail"]

    [alerts.channels.mail]
    type = "email"
    host = "smtp.example.org"
    security = "starttls"
    username_env = "GPUHIRE_SMTP_USER"
    password_env = "GPUHIRE_SMTP_PASSWORD"
    sender = "gpuhire@example.org"
    to = ["me@example.org"]
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ledger.settings_model import SETTINGS_CONFIG, no_bool_numbers

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    """A rule or a channel of [alerts] (see ledger.settings_model)."""

    model_config = SETTINGS_CONFIG
    # By name, not "*": a before-validator may not touch the rules' discriminator (`type`).
    # Decimal fields refuse true/false by themselves; these are the int and float ones.
    refuse_booleans = field_validator("minutes", "port", "timeout_s", mode="before",
                                      check_fields=False)(no_bool_numbers)


# -- rules --------------------------------------------------------------------------------
class _Rule(_Model):
    name: str  # unique among the rules; part of the dedup key, so keep it stable
    channels: list[str] = ["console"]  # names from [alerts.channels] (console is built in)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64)")
        return value


class MonthlyBudgetRule(_Rule):
    """Rent this month passes a level of the budget (and, optionally, projected month-end)."""

    type: Literal["monthly_budget"]
    budget_usd: Decimal = Field(gt=0)  # the month's budget
    levels_pct: list[Decimal] = [Decimal(50), Decimal(80), Decimal(100)]  # alert at each level
    projected: bool = True  # also alert when the projected month-end spend passes the budget

    @field_validator("levels_pct")
    @classmethod
    def _levels(cls, value: list[Decimal]) -> list[Decimal]:
        if not value or any(not 0 < v <= 1000 for v in value):
            raise ValueError("levels are percentages of the budget, each above 0 and at most 1000")
        return sorted(set(value))


class JobBudgetRule(_Rule):
    """A job's cost, running or finished, passes its cap (its own --max-usd, else `cap_usd`)."""

    type: Literal["job_budget"]
    cap_usd: Decimal | None = Field(None, gt=0)  # cap for jobs that set none


class BuySignalRule(_Rule):
    """The buy signal changes to one of `verdicts` (from the month before)."""

    type: Literal["buy_signal"]
    card: str | None = None  # default: [ownership] card
    verdicts: list[Literal["watch", "buy"]] = ["watch", "buy"]


class RentFractionRule(_Rule):
    """All rent so far passes a fraction of the card's price."""

    type: Literal["rent_fraction"]
    card: str | None = None  # default: [ownership] card
    fractions: list[Decimal] = [Decimal("0.5"), Decimal(1)]

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: list[Decimal]) -> list[Decimal]:
        if not value or any(not 0 < v <= 100 for v in value):
            raise ValueError("fractions of the card's price, each above 0 (0.5 = half)")
        return sorted(set(value))


class LongRunningRule(_Rule):
    """A machine has been running for more than `hours`."""

    type: Literal["long_running"]
    hours: Decimal = Field(gt=0)


class IdleGpuRule(_Rule):
    """A running machine's GPU stayed below `below_pct` utilisation for `minutes`."""

    type: Literal["idle_gpu"]
    below_pct: Decimal = Field(gt=0, le=100)
    minutes: int = Field(gt=0)


Rule = Annotated[
    MonthlyBudgetRule | JobBudgetRule | BuySignalRule | RentFractionRule | LongRunningRule
    | IdleGpuRule,
    Field(discriminator="type"),
]


# -- channels -----------------------------------------------------------------------------
class ConsoleChannel(_Model):
    type: Literal["console"]


class EmailChannel(_Model):
    """SMTP; user name and password are read from the named environment variables."""

    type: Literal["email"]
    host: str
    port: int | None = Field(None, ge=1, le=65535)  # default: 587 starttls, 465 ssl, 25 none
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: str | None = None  # variable holding the SMTP user name
    password_env: str | None = None  # variable holding the SMTP password
    sender: str
    to: list[str] = Field(min_length=1)
    timeout_s: float = Field(15, gt=0)
    ca_file: str | None = None  # a private CA to verify the server with (default: system CAs)

    @field_validator("username_env", "password_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError("give the NAME of an environment variable, not the secret itself")
        return value


class WebhookChannel(_Model):
    """JSON POST (`text` for Slack, plus the alert's fields); the URL may come from a variable."""

    type: Literal["webhook"]
    url: str | None = None
    url_env: str | None = None  # variable holding the URL (Slack URLs are secrets)
    timeout_s: float = Field(10, gt=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class SnsChannel(_Model):
    """An AWS SNS topic; credentials from the standard AWS chain."""

    type: Literal["sns"]
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    region: str | None = None  # default: the topic ARN's region
    profile: str | None = None


Channel = Annotated[
    ConsoleChannel | EmailChannel | WebhookChannel | SnsChannel, Field(discriminator="type")
]
CONSOLE = ConsoleChannel(type="console")


class AlertsSettings(_Model):
    """[alerts]: the rules and the channels they send to."""

    rules: list[Rule] = []
    channels: dict[str, Channel] = {}

    @model_validator(mode="after")
    def _references(self) -> AlertsSettings:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"alerts.rules.{index}.name: {rule.name!r} is used twice")
            seen.add(rule.name)
            for name in rule.channels:
                if name not in self.channels and name != "console":
                    known = ", ".join(["console", *sorted(self.channels)])
                    raise ValueError(
                        f"alerts.rules.{index}.channels: unknown channel {name!r} "
                        f"(known: {known}; add [alerts.channels.{name}])"
                    )
        return self

    def channel(self, name: str) -> Channel:
        """A channel by name (`console` is always there)."""
        if name in self.channels:
            return self.channels[name]
        if name == "console":
            return CONSOLE
        from ledger.errors import ConfigError

        known = ", ".join(["console", *sorted(self.channels)])
        raise ConfigError(f"unknown channel {name!r}", f"use one of {known} or add "
                          f"[alerts.channels.{name}] to the config")


class ReportSettings(_Model):
    """[report]: what `gpuhire report` compares with and where `--send` mails it."""

    card: str | None = None  # card of the buy-signal section; default: [ownership] card
    channel: str | None = None  # an email channel from [alerts.channels] used by --send
    recipients: list[str] = []  # override the channel's `to` for the report
    subject_prefix: str = "[gpuhire]"
