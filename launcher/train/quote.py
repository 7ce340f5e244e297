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

N GPUs (`--gpus N`, one trainer process per GPU under torchrun): lines_per_s is, in order,
  1. measured: the median of finished jobs of that size on that GPU type with N GPUs;
  2. scaled: one GPU's throughput (as above) x N x the scaling efficiency for N, which is the
     ledger's measured one for that type and N (an N-GPU job's lines/s over N x the one-GPU
     median of the same size), else `scaling_per_doubling ** log2(N)`: 0.85 per doubling by
     default (`[train] scaling_per_doubling`), so 2 GPUs 1.7x, 4 GPUs 2.89x, 8 GPUs 4.91x.
The quote says which.

Engines (`--engine crnn|kraken`): throughput is looked up for the job's engine only: a finished
job counts for kraken when its spec says `"engine": "kraken"`, and for the CRNN otherwise (jobs
recorded before kraken came have no engine: they were CRNN jobs). A kraken job's size is
`kraken` (kraken's default 4.0 M-parameter model) or `kraken spec <hash>` (a network spec of
the user's own). Until a kraken job has been measured, `DEFAULT_KRAKEN_LINES_PER_S` stands
(there is no calibration for kraken: its first quote on a CPU is the default).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.errors import InputError, ProviderError
from ledger.errors import GpuhireError

if TYPE_CHECKING:
    from ledger.book import Ledger

# Training lines per second by GPU type until the ledger has measured ones (any model size).
# From the field: a few thousand lines x ~50 epochs take 2-4 h on a cloud T4/L4 with common
# trainers; CPU is 20-50x slower (a CPU is calibrated instead, when it is this machine's).
# Every value can be overridden in [train.lines_per_s].
DEFAULT_TRAIN_LINES_PER_S: dict[str, float] = {"t4": 40.0, "l4": 70.0, "a10g": 75.0, "cpu": 2.0}
# The kraken engine's until a kraken job is measured (issue 16, measured on this project's CPU,
# one core each, 1,800 synthetic lines): kraken 7.1.1's default recognition model (4.0 M
# parameters) trained at about 2-3 lines/s per CPU core, gpuhire's `default` preset (6.2 M) at
# 2.45. The CPU figure is that of one core, so it is conservative on a machine with more.
# Nothing was measured on a GPU: the GPU figures are an ESTIMATE, scaled like the CRNN defaults
# (kraken's default model trained at about the CRNN `default` preset's speed on a core, so the
# same GPU/CPU ratio, x 1.0). `[train.lines_per_s]` overrides both engines' defaults.
DEFAULT_KRAKEN_LINES_PER_S: dict[str, float] = {"t4": 40.0, "l4": 70.0, "a10g": 75.0, "cpu": 2.5}
DEFAULT_BOOT_S = 240  # instance start, SSH up, image pulled (AWS); 0 for local
DEFAULT_STAGING_S = 60
CALIBRATION_S = 3.0  # timed training steps of a calibration (after two warm-up batches)
SHIPPED_PRESETS = ("tiny", "small", "default", "large")
# Throughput of N GPUs = one GPU's x N x this ** log2(N) until the ledger has measured the
# type and N: small HTR models are often input-bound, and DDP adds an all-reduce per step.
# Overridable in [train] scaling_per_doubling.
DEFAULT_SCALING_PER_DOUBLING = 0.85


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
    gpus: int = 1  # GPUs (trainer processes) per box
    engine: str = "crnn"  # crnn | kraken

    @property
    def hours(self) -> Decimal:
        return Decimal(self.seconds) / 3600

    @property
    def usd(self) -> Decimal:
        return (self.hours * self.usd_per_hour).quantize(Decimal("0.0001"), ROUND_CEILING)

    def describe(self) -> str:
        mins = self.seconds / 60
        on = f"{self.gpus}x {self.gpu}" if self.gpus > 1 else self.gpu
        return (
            f"{self.lines:,} lines x {self.epochs} epochs at {self.lines_per_s:.3g} lines/s "
            f"({self.model_size} on {on}, {self.throughput_source}) + {self.overhead_s} s "
            f"overhead = {mins:.0f} min at ${self.usd_per_hour}/h = ${self.usd}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The quote in `--format json` (docs/train.md)."""
        return {"gpu": self.gpu, "gpus": self.gpus, "engine": self.engine,
                "model_size": self.model_size, "lines": self.lines,
                "epochs": self.epochs, "lines_per_s": round(self.lines_per_s, 3),
                "throughput_source": self.throughput_source, "overhead_s": self.overhead_s,
                "usd_per_hour": self.usd_per_hour, "seconds": self.seconds, "usd": self.usd}


def default_throughput(gpu: str, overrides: dict[str, float] | None = None,
                       engine: str = "crnn") -> Throughput:
    """The documented default of `engine` for `gpu` (for the CRNN, `[train.lines_per_s]` first:
    those figures are the CRNN's, and kraken's default model trains several times slower); T4's
    for an unknown GPU."""
    if engine == "crnn" and overrides and gpu.lower() in overrides:
        return Throughput(overrides[gpu.lower()], "config")
    table = DEFAULT_KRAKEN_LINES_PER_S if engine == "kraken" else DEFAULT_TRAIN_LINES_PER_S
    source = "kraken default, an estimate" if engine == "kraken" and gpu.lower() != "cpu" else "default"
    return Throughput(table.get(gpu.lower(), table["t4"]), source)


def _gpus_of(job: Any) -> int:
    value = job.spec.get("gpus", 1) if isinstance(job.spec, dict) else 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def engine_of(job: Any) -> str:
    """A train job's engine: its spec's `engine`; `crnn` when absent (jobs from before kraken)."""
    value = job.spec.get("engine", "crnn") if isinstance(job.spec, dict) else "crnn"
    return value if value == "kraken" else "crnn"


def measured_rates(ledger: Ledger, gpu: str, size: str | None, gpus: int = 1,
                   engine: str = "crnn") -> list[float]:
    """Lines/s of the finished train jobs of `engine` and `size` (None: any) on `gpu` with
    `gpus` GPUs (`Job.spec["gpus"]`, 1 when absent; on this machine for a CPU), sorted."""
    device = device_of(gpu)
    host = host_name() if device == "cpu" else None
    return sorted(j.lines_per_s for j in ledger.jobs("train")
                  if j.lines_per_s and (j.gpu_model or "") == gpu.lower() and j.device == device
                  and (size is None or j.model_size == size) and _gpus_of(j) == gpus
                  and engine_of(j) == engine and (host is None or j.spec.get("host") == host))


def measured_throughput(ledger: Ledger, gpu: str, size: str, gpus: int = 1,
                        engine: str = "crnn") -> Throughput | None:
    """The median of finished train jobs of `engine` and `size` on `gpu` with `gpus` GPUs (on
    this machine for a CPU)."""
    values = measured_rates(ledger, gpu, size, gpus, engine)
    if not values:
        return None
    what = f"{gpus} GPUs, " if gpus > 1 else ""
    return Throughput(values[len(values) // 2], f"measured, {what}median of {len(values)} job(s)")


def default_efficiency(gpus: int, per_doubling: float = DEFAULT_SCALING_PER_DOUBLING) -> float:
    """The documented scaling efficiency of `gpus` GPUs: `per_doubling` ** log2(gpus)."""
    return per_doubling ** math.log2(gpus) if gpus > 1 else 1.0


def scaling_efficiency(ledger: Ledger | None, gpu: str, gpus: int,
                       per_doubling: float = DEFAULT_SCALING_PER_DOUBLING,
                       engine: str = "crnn") -> tuple[float, str]:
    """(efficiency, where from) of `gpus` GPUs of type `gpu`: the ledger's measured one (the
    median over model sizes measured both on one GPU and on `gpus`), else the default."""
    if gpus <= 1:
        return 1.0, "one GPU"
    measured: list[float] = []
    if gpu.lower() == "cpu":  # N gloo processes share one machine's cores: no speed-up expected
        per_doubling = 0.5
    if ledger is not None:
        multi = [j for j in ledger.jobs("train") if _gpus_of(j) == gpus and j.lines_per_s
                 and (j.gpu_model or "") == gpu.lower() and engine_of(j) == engine]
        for size in sorted({j.model_size for j in multi if j.model_size}):
            one = measured_rates(ledger, gpu, size, 1, engine)
            many = measured_rates(ledger, gpu, size, gpus, engine)
            if one and many:
                measured.append(many[len(many) // 2] / (gpus * one[len(one) // 2]))
    if measured:
        measured.sort()
        return measured[len(measured) // 2], f"measured scaling over {len(measured)} size(s)"
    if gpu.lower() == "cpu":
        return default_efficiency(gpus, per_doubling), "CPU processes share the same cores"
    return default_efficiency(gpus, per_doubling), f"default scaling {per_doubling:g} per doubling"


def scale(one: Throughput, gpus: int, efficiency: tuple[float, str]) -> Throughput:
    """One GPU's throughput scaled to `gpus` GPUs at `efficiency`."""
    if gpus <= 1:
        return one
    eff, why = efficiency
    return Throughput(one.lines_per_s * gpus * eff,
                      f"{one.source} x {gpus} GPUs x {eff:.2f} ({why})")


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
    gpus: int = 1,
    engine: str = "crnn",
) -> Quote:
    """A quote for `lines` x `epochs` on `gpu`: `throughput` when given, else a measured rate,
    else the default."""
    if throughput is None:
        throughput = (Throughput(measured_lines_per_s, "measured") if measured_lines_per_s
                      else default_throughput(gpu, default_lines_per_s, engine))
    seconds = int(lines * epochs / throughput.lines_per_s) + overhead_s
    return Quote(gpu, lines, epochs, throughput.lines_per_s, throughput.source, overhead_s,
                 usd_per_hour, seconds, size, gpus, engine)


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


def per_speed_seconds(speeds: dict[str, Decimal], gpus: int = 1,
                      per_doubling: float = DEFAULT_SCALING_PER_DOUBLING) -> Callable[[str], float]:
    """Expected seconds of one T4-hour of work on each GPU type (before a job is known), on a
    box of `gpus` of them at the default scaling efficiency."""
    factor = gpus * default_efficiency(gpus, per_doubling)
    return lambda gpu: 3600.0 / (float(speeds.get(gpu, Decimal(1))) * factor)


def choose_gpu(gpus: Iterable[str], usd_per_hour: Callable[[str], Decimal],
               expected_s: Callable[[str], float], *,
               alternatives: Callable[[], str] | None = None) -> GpuChoice:
    """The type of `gpus` with the lowest price x expected hours. `usd_per_hour(gpu)` is the best
    offer's price and raises a GpuhireError when there is none: that type is skipped. With no
    offer for any type, a ProviderError naming each type's reason and `alternatives()` (where
    one would be: another market or region)."""
    prices: dict[str, Decimal] = {}
    skipped: dict[str, str] = {}
    asked_wrong: list[InputError] = []  # the request itself (no box has N of that GPU)
    for gpu in gpus:
        try:
            prices[gpu] = usd_per_hour(gpu)
        except GpuhireError as exc:
            skipped[gpu] = exc.message
            if isinstance(exc, InputError):
                asked_wrong.append(exc)
    if not prices and asked_wrong and len(asked_wrong) == len(skipped):  # no region or market helps
        raise InputError("no GPU type has an offer: " + "; ".join(skipped.values()),
                         "; ".join(dict.fromkeys(e.fix for e in asked_wrong if e.fix)) or None)
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
                   | None = None, overrides: dict[str, float] | None = None, gpus: int = 1,
                   per_doubling: float = DEFAULT_SCALING_PER_DOUBLING,
                   engine: str = "crnn") -> Throughput:
    """Measured for this engine and size on this GPU (and N GPUs), else `calibrate()` (the
    local CPU), else the engine's default; for N GPUs without an N-GPU measurement, one GPU's
    x N x the scaling efficiency (see the module doc)."""
    if gpus > 1:
        measured = measured_throughput(ledger, gpu, size, gpus, engine)
        if measured is not None:
            return measured
        one = job_throughput(ledger, gpu, size, calibrate=calibrate, overrides=overrides, engine=engine)
        return scale(one, gpus, scaling_efficiency(ledger, gpu, gpus, per_doubling, engine))
    measured = measured_throughput(ledger, gpu, size, engine=engine)
    if measured is not None:
        return measured
    if overrides and gpu.lower() in overrides:
        return default_throughput(gpu, overrides, engine)
    calibrated = calibrate() if calibrate is not None else None
    return calibrated or default_throughput(gpu, overrides, engine)


def choose_for_job(provider: Any, ledger: Ledger, line_epochs: int, size: str,
                   overrides: dict[str, float] | None = None,
                   per_doubling: float = DEFAULT_SCALING_PER_DOUBLING,
                   engine: str = "crnn") -> GpuChoice | None:
    """`--gpu auto` on AWS: the provider chose by price per unit of speed (AwsProvider._choose,
    before any job was known); choose again among the same offers by this job's expected cost
    (its size's throughput on each GPU type, `line_epochs` lines to train), and point the
    provider at it. None for a provider or a --gpu that chose nothing."""
    first: GpuChoice | None = getattr(provider, "gpu_choice", None)
    if first is None:
        return None
    overhead_s = provider.plan().overhead_s
    gpus = int(getattr(provider, "gpus", 1))  # N-GPU offers: at N GPUs' (scaled) throughput

    def seconds(gpu: str) -> float:
        rate = job_throughput(ledger, gpu, size, overrides=overrides, gpus=gpus,
                              per_doubling=per_doubling, engine=engine)
        return line_epochs / rate.lines_per_s + float(overhead_s)

    choice = replace(choose_gpu(first.usd_per_hour, first.usd_per_hour.__getitem__, seconds),
                     skipped=first.skipped)
    provider.gpu, provider.gpu_choice = choice.gpu, choice  # what AwsProvider rents and plans
    return choice
