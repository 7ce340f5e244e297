"""Offers: where a T4 or L4 (or a box of 4 or 8 of them) can be had now on AWS, and at what price.

Spot prices are read live (`describe_spot_price_history`, the latest point per zone and type),
only for zones that actually offer the type (`describe_instance_type_offerings`). On-demand
prices come from the bundled, dated table `ondemand_prices.toml`, which `[aws]
on_demand_usd_per_hour` overrides per type. Offers rank by price; at equal price the type with
more vCPUs wins, because a small HTR model is often starved by its data loader.

GPU counts (`gpuhire train --gpus N`): the table gives each type's `gpus`; offers for N GPUs
come only from types with exactly N (`types_for`): the configured `[aws.instance_types]` of
that count, else the table's. AWS has no 2-GPU T4 or L4 type: `--gpus 2` is refused with the
counts that exist (`MultiGpuError`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

from launcher.errors import ConfigError, InputError
from launcher.providers.aws.client import aws_errors
from launcher.providers.aws.types import Market, Offer
from ledger.errors import GpuhireError
from ledger.timeutil import as_utc

SPOT_SOURCE = "describe_spot_price_history"


@dataclass(frozen=True)
class TypeInfo:
    """What the launcher knows about an instance type without asking AWS."""

    instance_type: str
    gpu: str
    vcpus: int
    memory_gib: int
    on_demand_usd_per_hour: Decimal
    source: str  # the table's source and date, or "config"
    gpus: int = 1  # GPUs of that kind in one instance


GPU_COUNTS = (1, 2, 4, 8)  # what `--gpus` accepts


def type_table(overrides: dict[str, Decimal] | None = None, *,
               gpus: int | None = 1) -> dict[str, TypeInfo]:
    """The bundled on-demand table, with config overrides applied: the types with `gpus` GPUs
    (one-GPU types by default; None: every type)."""
    text = resources.files("launcher.providers.aws").joinpath("ondemand_prices.toml").read_text()
    data = tomllib.loads(text)
    origin = f"{data['source']}, as of {data['as_of']}"
    table: dict[str, TypeInfo] = {}
    for name, row in data["types"].items():
        price = Decimal(row["usd_per_hour"])
        source = origin
        if overrides and name in overrides:
            price, source = Decimal(overrides[name]), "config"
        count = int(row.get("gpus", 1))
        if gpus is None or count == gpus:
            table[name] = TypeInfo(name, row["gpu"], int(row["vcpus"]), int(row["memory_gib"]), price,
                                   source, count)
    return table


def check_types(gpu: str, types: list[str], table: dict[str, TypeInfo]) -> None:
    """Every configured type must be known (sizes, on-demand price) and carry that GPU."""
    for name in types:
        info = table.get(name)
        if info is None or info.gpu != gpu:
            known = ", ".join(sorted(n for n, i in table.items() if i.gpu == gpu))
            raise ConfigError(
                f"[aws.instance_types] {gpu}: {name!r} is not a known {gpu.upper()} type",
                f"use some of {known}",
            )


class MultiGpuError(InputError):
    """No instance type has that many GPUs of that kind."""


def counts_of(gpu: str, table: dict[str, TypeInfo]) -> list[int]:
    """The GPU counts one instance type of `gpu` has (from the whole table)."""
    return sorted({i.gpus for i in table.values() if i.gpu == gpu})


def types_for(gpu: str, gpus: int, configured: list[str], table: dict[str, TypeInfo]) -> list[str]:
    """The instance types to offer for `gpus` GPUs of `gpu`: the configured ones with that
    count, else every table type with it. `table` is the whole table (type_table(gpus=None))."""
    check_types(gpu, configured, table)
    mine = [t for t in configured if table[t].gpus == gpus]
    if mine:
        return mine
    found = sorted((n for n, i in table.items() if i.gpu == gpu and i.gpus == gpus),
                   key=lambda n: (table[n].on_demand_usd_per_hour, n))
    if not found:
        have = ", ".join(str(c) for c in counts_of(gpu, table))
        names = "; ".join(f"{n} {i.gpus}x" for n, i in sorted(table.items())
                          if i.gpu == gpu and i.gpus > 1)
        raise MultiGpuError(f"AWS has no instance type with {gpus} {gpu.upper()} GPUs",
                            f"use --gpus {have.replace(', ', ' or ')}" + (f" ({names})" if names else "")
                            + ", or --gpus-fallback to take fewer")
    return found


def gpu_counts(gpus: int, fallback: bool) -> list[int]:
    """The GPU counts a launch may take, best first: N only, or with `fallback` N then the
    smaller counts --gpus accepts (8, 4, 2, 1)."""
    return [c for c in sorted(GPU_COUNTS, reverse=True) if c == gpus or (fallback and c < gpus)]


def zones_offering(ec2: Any, types: list[str]) -> dict[str, set[str]]:
    """Instance type -> the availability zones of the region that offer it."""
    out: dict[str, set[str]] = {t: set() for t in types}
    with aws_errors("list the zones offering " + ", ".join(types)):
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": types}],
        )
        for page in pages:
            for o in page["InstanceTypeOfferings"]:
                if o["InstanceType"] in out:
                    out[o["InstanceType"]].add(o["Location"])
    return out


def latest_spot_prices(
    ec2: Any, types: list[str], now: datetime
) -> dict[tuple[str, str], tuple[Decimal, datetime]]:
    """(zone, type) -> (USD/h, in force since): the latest Linux point of each."""
    latest: dict[tuple[str, str], tuple[Decimal, datetime]] = {}
    with aws_errors("read spot prices"):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=types,
            ProductDescriptions=["Linux/UNIX"],
            # Asking from a little before now returns the point in force now per zone and type.
            StartTime=now - timedelta(hours=1),
            EndTime=now,
        )
        for page in pages:
            for p in page["SpotPriceHistory"]:
                if not str(p.get("ProductDescription", "")).startswith("Linux/UNIX"):
                    continue
                key = (p["AvailabilityZone"], p["InstanceType"])
                at = as_utc(p["Timestamp"])
                if key not in latest or at > latest[key][1]:
                    latest[key] = (Decimal(str(p["SpotPrice"])), at)
    return latest


def rank(offers: list[Offer]) -> list[Offer]:
    """Cheapest first; at equal price more vCPUs first; then zone and type for stability."""
    return sorted(offers, key=lambda o: (o.usd_per_hour, -o.vcpus, o.zone, o.instance_type))


def spot_offers(
    ec2: Any, region: str, gpu: str, types: list[str], table: dict[str, TypeInfo], now: datetime
) -> list[Offer]:
    """Live spot offers for `gpu`, ranked."""
    check_types(gpu, types, table)
    zones = zones_offering(ec2, types)
    prices = latest_spot_prices(ec2, types, now)
    offers = []
    for (zone, itype), (price, at) in prices.items():
        if itype not in zones or zone not in zones[itype]:
            continue  # a price for a zone that cannot launch the type is no offer
        info = table[itype]
        offers.append(
            Offer(
                provider="aws", region=region, zone=zone, instance_type=itype, gpu=gpu,
                gpu_count=info.gpus, vcpus=info.vcpus, memory_gib=info.memory_gib, market=Market.spot,
                usd_per_hour=price, on_demand_usd_per_hour=info.on_demand_usd_per_hour,
                price_at=at, source=SPOT_SOURCE,
            )
        )
    return rank(offers)


def on_demand_offers(
    ec2: Any, region: str, gpu: str, types: list[str], table: dict[str, TypeInfo]
) -> list[Offer]:
    """On-demand offers (table prices) in every zone offering each type, ranked."""
    check_types(gpu, types, table)
    zones = zones_offering(ec2, types)
    offers = []
    for itype in types:
        info = table[itype]
        for zone in sorted(zones.get(itype, ())):
            offers.append(
                Offer(
                    provider="aws", region=region, zone=zone, instance_type=itype, gpu=gpu,
                    gpu_count=info.gpus, vcpus=info.vcpus, memory_gib=info.memory_gib,
                    market=Market.on_demand, usd_per_hour=info.on_demand_usd_per_hour,
                    on_demand_usd_per_hour=info.on_demand_usd_per_hour, price_at=None,
                    source=info.source,
                )
            )
    return rank(offers)


def on_demand_instead(on_demand_offers: Callable[[str], list[Offer]], gpus: Iterable[str],
                      region: str) -> str:
    """When no GPU type has a spot offer: the types that on-demand would rent here, named, so
    the error says where an offer is. Empty when none would."""
    found = []
    for gpu in gpus:
        try:
            if on_demand_offers(gpu):
                found.append(gpu.upper())
        except GpuhireError:  # a type this account cannot use at all: not an alternative
            continue
    return f"on-demand {', '.join(found)} offered in {region}" if found else ""
