"""Quoting a job before anything is rented: time from measured throughput, cost from the price.

estimated hours = lines x epochs / lines_per_s (measured in past jobs on that GPU type, from the
ledger; defaults until there are some) + boot and staging overhead; cost = hours x USD per hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

# Training lines per second by GPU type until the ledger has measured ones. From the field:
# a few thousand lines x ~50 epochs take 2-4 h on a cloud T4/L4 with common trainers; CPU is
# 20-50x slower. Every value can be overridden in [train.lines_per_s].
DEFAULT_TRAIN_LINES_PER_S: dict[str, float] = {"t4": 40.0, "l4": 70.0, "a10g": 75.0, "cpu": 2.0}
DEFAULT_BOOT_S = 240  # instance start, SSH up, image pulled (AWS); 0 for local
DEFAULT_STAGING_S = 60


@dataclass(frozen=True)
class Quote:
    """What a job is expected to take and cost, and where the numbers came from."""

    gpu: str
    lines: int
    epochs: int
    lines_per_s: float
    throughput_source: str  # "measured (N jobs)" or "default"
    overhead_s: int
    usd_per_hour: Decimal
    seconds: int

    @property
    def hours(self) -> Decimal:
        return Decimal(self.seconds) / 3600

    @property
    def usd(self) -> Decimal:
        return (self.hours * self.usd_per_hour).quantize(Decimal("0.0001"), ROUND_CEILING)

    def describe(self) -> str:
        mins = self.seconds / 60
        return (
            f"{self.lines:,} lines x {self.epochs} epochs at {self.lines_per_s:g} lines/s "
            f"on {self.gpu} ({self.throughput_source}) + {self.overhead_s} s overhead "
            f"= {mins:.0f} min at ${self.usd_per_hour}/h = ${self.usd}"
        )


def quote(
    *,
    gpu: str,
    lines: int,
    epochs: int,
    usd_per_hour: Decimal,
    measured_lines_per_s: float | None,
    default_lines_per_s: dict[str, float] | None = None,
    overhead_s: int = DEFAULT_BOOT_S + DEFAULT_STAGING_S,
) -> Quote:
    """A quote for `lines` x `epochs` on `gpu`, preferring measured throughput."""
    defaults = {**DEFAULT_TRAIN_LINES_PER_S, **(default_lines_per_s or {})}
    if measured_lines_per_s:
        rate, source = measured_lines_per_s, "measured"
    else:
        rate, source = defaults.get(gpu.lower(), defaults.get("t4", 40.0)), "default"
    seconds = int(lines * epochs / rate) + overhead_s
    return Quote(gpu, lines, epochs, rate, source, overhead_s, usd_per_hour, seconds)
