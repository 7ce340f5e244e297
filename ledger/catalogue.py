"""Built-in defaults: billing rules, GPU speeds and the cards a user could buy.

Each table names its source and date; every value can be overridden in the config file
(`[providers.NAME]`, `[speeds]`, `[cards.NAME]`). The ledger stores the rules in force with
every session, so a later change here never changes an old bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

SOURCE = "gpuhire shared/facts.md: AWS EC2/EBS/VPC pricing pages and vendor launch prices"
AS_OF = "2026-11-01"

# The GPU models gpuhire rents on AWS (T4: g4dn, L4: g6). Every list of them reads this one.
RENTED_GPUS: tuple[str, ...] = ("t4", "l4")


@dataclass(frozen=True)
class BillingRules:
    """How a provider bills a session. Stored on each session when it is recorded."""

    min_billed_s: int = 0  # minimum compute seconds each time an instance starts
    interruption_free_s: int = 0  # provider-interrupted spot usage in this window is free
    ebs_usd_per_gb_month: Decimal = Decimal(0)  # attached block storage
    ipv4_usd_per_hour: Decimal = Decimal(0)  # a public IPv4 address
    owned: bool = False  # hardware the user owns (local, ssh): its hours are not rent


# AWS Linux: per-second billing, 60 s minimum; EC2-interrupted spot free in its first hour;
# gp3 0.08 USD/GB-month; public IPv4 0.005 USD/h.
BUILTIN_PROVIDERS: dict[str, BillingRules] = {
    "aws": BillingRules(
        min_billed_s=60,
        interruption_free_s=3600,
        ebs_usd_per_gb_month=Decimal("0.08"),
        ipv4_usd_per_hour=Decimal("0.005"),
    ),
    "local": BillingRules(owned=True),
    "ssh": BillingRules(owned=True),
}

# Other providers (RunPod, Lambda, a university cluster): per second, no minimum.
DEFAULT_RULES = BillingRules()

# Training speed relative to a T4 (small CNN/LSTM line models). Measured throughput from
# past jobs replaces these estimates where the ledger has it.
BUILTIN_SPEEDS: dict[str, Decimal] = {
    "t4": Decimal("1.0"),
    "l4": Decimal("2.0"),
    "a10g": Decimal("2.2"),
}


@dataclass(frozen=True)
class CardProfile:
    """A GPU a user could buy instead of renting."""

    name: str
    label: str
    price_usd: Decimal
    power_w: Decimal  # board power under load
    speed: Decimal  # training speed relative to a T4
    resale_fraction: Decimal = Decimal("0.30")  # what it sells for at the end of its life
    lifetime_months: int = 36
    source: str = SOURCE
    as_of: str = AS_OF


def _card(name: str, label: str, price: str, power: str, speed: str) -> CardProfile:
    return CardProfile(name, label, Decimal(price), Decimal(power), Decimal(speed))


BUILTIN_CARDS: dict[str, CardProfile] = {
    c.name: c
    for c in (
        _card("rtx3060", "RTX 3060 12 GB", "329", "170", "1.25"),
        _card("rtx4060ti", "RTX 4060 Ti 16 GB", "499", "165", "1.6"),
        _card("rtx4070", "RTX 4070 12 GB", "599", "200", "2.0"),
        _card("rtx4090", "RTX 4090 24 GB", "1599", "450", "4.0"),
        _card("t4", "T4 16 GB (data-centre)", "2300", "70", "1.0"),
        _card("l4", "L4 24 GB (data-centre)", "3300", "72", "2.0"),
    )
}

DEFAULT_CARD = "rtx3060"
