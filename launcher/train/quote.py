"""Quoting a job before anything is rented: time from throughput, cost from the price.

estimated seconds = lines x epochs / lines_per_s + boot and staging overhead; cost = hours x
USD per hour. lines_per_s is never pooled: it is looked up for this job's model size (the preset's
name, or its parameter count for a .toml of your own), device (cpu/cuda) and GPU type:

  1. measured: the median of the finished jobs of that size on that GPU (and, for a CPU, on
     this machine) in the ledger;
  2. calibrated (the local CPU only): a few seconds of real training steps on the job's own
     lines with the real trainer (jobs/htr/calibrate.py);
  3. default: `DEFAULT_TRAIN_LINES_PER_S` (or `[train.lines_per_s]`), the only choice for a
     remote GPU nobody has measured yet. The quote says which one it used.

`choose_gpu` is `--gpu auto` on AWS: among the GPU types with an offer, the one with the lowest
expected cost for this job (price x hours at that GPU's throughput); a type without an offer
is skipped and named.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.errors import ProviderError
from ledger.errors import GpuhireError

if TYPE_CHECKING:
    from ledger.book import Ledger

# Training lines per second by GPU type until the ledger has measured ones (any model size).
# From the field: a few thousand lines x ~50 epochs take 2-4 h on a cloud T4/L4 with common
# trainers; CPU is 20-50x slower (a CPU is calibrated instead, when it is this machine's).
# Every value can be overridden in [train.lines_per_s].
DEFAULT_TRAIN_LINES_PER_S: dict[str, float] = {"t4": 40.0, "l4": 70.0, "a10g": 75.0, "cpu": 2.0}
DEFAULT_BOOT_S = 240  # instance start, SSH up, image pulled (AWS); 0 for local
DEFAULT_STAGING_S = 60
CALIBRATION_S = 3.0  # timed training steps of a calibration (after two warm-up batches)
SHIPPED_PRESETS = ("tiny", "small", "default", "large")


def host_name() -> str:
    """This machine's name: a CPU's measured throughput belongs to its machine."""
    return socket.gethostname()


def model_size(preset: str, parameters: int | None = None) -> str:
    """The size throughput is looked up by: a shipped preset's name, else the parameter count
    (two significant digits, so that the same .toml on a slightly different codec still matches)."""
    if preset in SHIPPED_PRESETS or parameters is None:
        return preset if preset in SHIPPED_PRESETS else f"preset {Path(preset).name}"
    return f"{float(f'{parameters:.2g}') / 1e6:g}M params"


def device_of(gpu: str) -> str:
    return "cpu" if gpu.lower() == "cpu" else "cuda"


@dataclass(frozen=True)
class Throughput:
    """Training lines per second for one model size on one GPU type, and where it came from."""

    lines_per_s: float
    source: str  # "measured (median of N jobs)", "calibrated (...)", "default", "config"


@dataclass(frozen=True)
class Quote:
    """What a job is expected to take and cost, and where the numbers came from."""

    gpu: str
    lines: int
    epochs: int
    lines_per_s: float
    throughput_source: str  # "measured (median of N jobs)", "calibrated (...)" or "default"
    overhead_s: int
    usd_per_hour: Decimal
    seconds: int
    model_size: str = "default"

    @property
    def hours(self) -> Decimal:
        return Decimal(self.seconds) / 3600

    @property
    def usd(self) -> Decimal:
        return (self.hours * self.usd_per_hour).quantize(Decimal("0.0001"), ROUND_CEILING)

    def describe(self) -> str:
        mins = self.seconds / 60
        return (
            f"{self.lines:,} lines x {self.epochs} epochs at {self.lines_per_s:.3g} lines/s "
            f"({self.model_size} on {self.gpu}, {self.throughput_source}) + {self.overhead_s} s "
            f"overhead = {mins:.0f} min at ${self.usd_per_hour}/h = ${self.usd}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The quote in `--format json` (docs/train.md)."""
        return {"gpu": self.gpu, "model_size": self.model_size, "lines": self.lines,
                "epochs": self.epochs, "lines_per_s": round(self.lines_per_s, 3),
                "throughput_source": self.throughput_source, "overhead_s": self.overhead_s,
                "usd_per_hour": self.usd_per_hour, "seconds": self.seconds, "usd": self.usd}


def default_throughput(gpu: str, overrides: dict[str, float] | None = None) -> Throughput:
    """The documented default for `gpu` (`[train.lines_per_s]` first); T4's for an unknown GPU."""
    if overrides and gpu.lower() in overrides:
        return Throughput(overrides[gpu.lower()], "config")
    return Throughput(DEFAULT_TRAIN_LINES_PER_S.get(gpu.lower(), DEFAULT_TRAIN_LINES_PER_S["t4"]),
                      "default")


def measured_throughput(ledger: Ledger, gpu: str, size: str) -> Throughput | None:
    """The median of finished train jobs of `size` on `gpu` (on this machine for a CPU)."""
    device = device_of(gpu)
    values = ledger.throughputs("train", gpu, model_size=size, device=device,
                                host=host_name() if device == "cpu" else None)
    if not values:
        return None
    return Throughput(values[len(values) // 2], f"measured, median of {len(values)} job(s)")


def quote(
    *,
    gpu: str,
    lines: int,
    epochs: int,
    usd_per_hour: Decimal,
    measured_lines_per_s: float | None = None,
    default_lines_per_s: dict[str, float] | None = None,
    overhead_s: int = DEFAULT_BOOT_S + DEFAULT_STAGING_S,
    throughput: Throughput | None = None,
    size: str = "default",
) -> Quote:
    """A quote for `lines` x `epochs` on `gpu`: `throughput` when given, else a measured rate,
    else the default."""
    if throughput is None:
        throughput = (Throughput(measured_lines_per_s, "measured") if measured_lines_per_s
                      else default_throughput(gpu, default_lines_per_s))
    seconds = int(lines * epochs / throughput.lines_per_s) + overhead_s
    return Quote(gpu, lines, epochs, throughput.lines_per_s, throughput.source, overhead_s,
                 usd_per_hour, seconds, size)


# -- --gpu auto -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuChoice:
    """`--gpu auto`: the GPU type chosen, what each type with an offer would cost, and the
    types skipped for want of an offer."""

    gpu: str
    usd_per_hour: dict[str, Decimal]  # the best offer of each type that has one
    expected_usd: dict[str, Decimal]  # that price x the expected hours of the job on that type
    skipped: dict[str, str] = field(default_factory=dict)  # type -> why (no offer)

    def describe(self) -> str:
        """e.g. `--gpu auto: t4 ($0.0123 expected; l4 $0.0150); skipped l4: no L4 spot offers`."""
        others = [f"{g} ${u}" for g, u in self.expected_usd.items() if g != self.gpu]
        text = f"--gpu auto: {self.gpu} (${self.expected_usd[self.gpu]} expected"
        text += f"; {', '.join(others)})" if others else ")"
        for gpu, why in self.skipped.items():
            text += f"; skipped {gpu}: {why}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "usd_per_hour": dict(self.usd_per_hour),
                "expected_usd": dict(self.expected_usd), "skipped": dict(self.skipped)}


def per_speed_seconds(speeds: dict[str, Decimal]) -> Callable[[str], float]:
    """Expected seconds of one T4-hour of work on each GPU type (before a job is known)."""
    return lambda gpu: 3600.0 / float(speeds.get(gpu, Decimal(1)))


def choose_gpu(gpus: Iterable[str], usd_per_hour: Callable[[str], Decimal],
               expected_s: Callable[[str], float], *,
               alternatives: Callable[[], str] | None = None) -> GpuChoice:
    """The type of `gpus` with the lowest price x expected hours. `usd_per_hour(gpu)` is the best
    offer's price and raises a GpuhireError when there is none: that type is skipped. With no
    offer for any type, a ProviderError naming each type's reason and `alternatives()` (where
    one would be: another market or region)."""
    prices: dict[str, Decimal] = {}
    skipped: dict[str, str] = {}
    for gpu in gpus:
        try:
            prices[gpu] = usd_per_hour(gpu)
        except GpuhireError as exc:
            skipped[gpu] = exc.message
    if not prices:
        where = alternatives() if alternatives else ""
        raise ProviderError("no GPU type has an offer: " + "; ".join(skipped.values())
                            + (f" ({where})" if where else ""),
                            "try another [aws] region, --on-demand, or [aws] fallback_on_demand")
    raw = {g: p * Decimal(str(expected_s(g))) / 3600 for g, p in prices.items()}
    best = min(raw, key=lambda g: (raw[g], prices[g], g))
    expected = {g: u.quantize(Decimal("0.0001"), ROUND_CEILING) for g, u in raw.items()}
    return GpuChoice(best, prices, expected, skipped)


# -- this job's throughput --------------------------------------------------------------------
def job_model_size(preset: str, dataset: Path) -> str:
    """`model_size` of a job: a shipped preset's name; a .toml's parameter count on this dataset."""
    if preset in SHIPPED_PRESETS:
        return preset
    try:
        from jobs.htr.calibrate import preset_parameters
        from jobs.htr.errors import HtrError
    except ImportError:  # no trainer here (torch): name the file
        return model_size(preset)
    try:
        return model_size(preset, preset_parameters(dataset, preset))
    except (HtrError, OSError):
        return model_size(preset)


def calibrated_throughput(dataset: Path, preset: str) -> Throughput | None:
    """A few seconds of real training steps on this CPU on the job's own lines; None when the
    trainer cannot run here (then the default stands, and the quote says so)."""
    try:
        from jobs.htr.calibrate import measure
        from jobs.htr.config import load_config
        from jobs.htr.errors import HtrError
    except ImportError:
        return None
    try:
        cal = measure(dataset, load_config(preset), seconds=CALIBRATION_S, device="cpu")
    except HtrError:
        return None
    if not cal.lines:
        return None
    return Throughput(cal.lines_per_s, f"calibrated: {cal.lines} lines in {cal.seconds:.1f} s")


def job_throughput(ledger: Ledger, gpu: str, size: str, *, calibrate: Callable[[], Throughput | None]
                   | None = None, overrides: dict[str, float] | None = None) -> Throughput:
    """Measured for this size on this GPU, else `calibrate()` (the local CPU), else the default."""
    measured = measured_throughput(ledger, gpu, size)
    if measured is not None:
        return measured
    if overrides and gpu.lower() in overrides:
        return default_throughput(gpu, overrides)
    calibrated = calibrate() if calibrate is not None else None
    return calibrated or default_throughput(gpu, overrides)


def choose_for_job(provider: Any, ledger: Ledger, line_epochs: int, size: str,
                   overrides: dict[str, float] | None = None) -> GpuChoice | None:
    """`--gpu auto` on AWS: the provider chose by price per unit of speed (AwsProvider._choose,
    before any job was known); choose again among the same offers by this job's expected cost
    (its size's throughput on each GPU type, `line_epochs` lines to train), and point the
    provider at it. None for a provider or a --gpu that chose nothing."""
    first: GpuChoice | None = getattr(provider, "gpu_choice", None)
    if first is None:
        return None
    overhead_s = provider.plan().overhead_s

    def seconds(gpu: str) -> float:
        rate = job_throughput(ledger, gpu, size, overrides=overrides)
        return line_epochs / rate.lines_per_s + float(overhead_s)

    choice = replace(choose_gpu(first.usd_per_hour, first.usd_per_hour.__getitem__, seconds),
                     skipped=first.skipped)
    provider.gpu, provider.gpu_choice = choice.gpu, choice  # what AwsProvider rents and plans
    return choice
