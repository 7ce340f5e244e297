"""Built-in defaults: billing rules, GPU speeds and the cards a user could buy.

Each table names its source and date; every value can be overridden in the config file
(`[providers.NAME]`, `[speeds]`, `[cards.NAME]`). The ledger stores the rules in force with
every session, so a later change here never changes an old bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

AS_OF = "2026-11-01"  # the date of every figure below; `gpuhire cards` prints it
# The consumer cards: NVIDIA's launch prices (MSRP) and board power.
SOURCE = "NVIDIA launch price (MSRP) and board power (nvidia.com)"
# The data-centre cards, for which NVIDIA publishes no MSRP.
DATACENTRE_SOURCE = "typical list price (NVIDIA publishes no MSRP); board power from NVIDIA's datasheet"

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


# AWS, us-east-1, Linux, as of 2026-11-01: per-second billing with a 60 s minimum (EC2
# On-Demand pricing page, aws.amazon.com/ec2/pricing/on-demand/); spot that EC2 interrupts in
# its first hour is free (docs.aws.amazon.com, "Billing for interrupted Spot Instances"); gp3
# 0.08 USD/GB-month (EBS pricing, aws.amazon.com/ebs/pricing/); a public IPv4 address 0.005
# USD/h (VPC pricing, aws.amazon.com/vpc/pricing/).
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


def card_dict(c: CardProfile) -> dict[str, Any]:
    """One card of `gpuhire cards --format json` (docs/json.md)."""
    return {"name": c.name, "label": c.label, "price_usd": c.price_usd, "power_w": c.power_w,
            "speed_vs_t4": c.speed, "resale_fraction": c.resale_fraction,
            "lifetime_months": c.lifetime_months, "source": c.source, "as_of": c.as_of}


def _card(name: str, label: str, price: str, power: str, speed: str,
          source: str = SOURCE) -> CardProfile:
    return CardProfile(name, label, Decimal(price), Decimal(power), Decimal(speed),
                       source=source)


BUILTIN_CARDS: dict[str, CardProfile] = {
    c.name: c
    for c in (
        _card("rtx3060", "RTX 3060 12 GB", "329", "170", "1.25"),
        _card("rtx4060ti", "RTX 4060 Ti 16 GB", "499", "165", "1.6"),
        _card("rtx4070", "RTX 4070 12 GB", "599", "200", "2.0"),
        _card("rtx4090", "RTX 4090 24 GB", "1599", "450", "4.0"),
        _card("t4", "T4 16 GB (data-centre)", "2300", "70", "1.0", DATACENTRE_SOURCE),
        _card("l4", "L4 24 GB (data-centre)", "3300", "72", "2.0", DATACENTRE_SOURCE),
    )
}

DEFAULT_CARD = "rtx3060"
