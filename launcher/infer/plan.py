"""Where to recognise a set of pages: this machine's CPU, or rented T4/L4 GPUs (pure, no I/O).

    cpu seconds = lines / CPU lines/s + scans x CPU s/page (measured on this machine: past runs
                  or a calibration, which recognises a few lines and segments one scan)
    gpu seconds = (lines / GPU lines/s + scans x GPU s/page) / instances + boot overhead
    gpu USD     = instances x gpu seconds / 3600 x USD per hour (the offer's price now)
    cpu USD     = cpu seconds / 3600 x this machine's running cost (watts x USD per kWh)

Scans are page images without XML (frames: a multi-page TIFF counts each page): layout analysis
finds their lines first, and on a CPU it dominates a page's time (~10-25 s a page against well
under a second to read its lines), so the planner counts it per page.

The CPU wins when it finishes within the coffee break (default 15 minutes): a rented GPU is
not worth its boot time and bill for that. Otherwise the cheapest GPU option that meets the
deadline, if one was given; instances are added (up to the maximum) to meet a deadline, or to
keep one instance's share under `hours_per_instance`. `--gpu` forces the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from ledger.catalogue import RENTED_GPUS

# Inference lines/s until a measurement exists, by device. From the field: CPU inference is
# 2-10x slower than a GPU for line models; a batched CRNN on a T4 recognises a few hundred
# lines/s, an L4 about twice that. Override in [infer.lines_per_s].
DEFAULT_INFER_LINES_PER_S: dict[str, float] = {"cpu": 25.0, "t4": 250.0, "l4": 450.0}
DEFAULT_LINES_PER_PAGE = 30.0  # when the pages cannot be counted
# Layout analysis (kraken's blla) seconds per page until measured, by device: measured here on
# synthetic 1400x1890 pages, ~11 s with 2 CPU threads (~24 s on one core); on GPUs blla's own
# network is quick and the rest (polygon extraction on the CPU) dominates: ~1.5 s on a T4 box,
# ~1.0 s on an L4 box (estimates until fleet jobs measure them). Override in [infer.segment_s_per_page].
DEFAULT_SEGMENT_S_PER_PAGE: dict[str, float] = {"cpu": 12.0, "t4": 1.5, "l4": 1.0}
DEFAULT_COFFEE_BREAK_S = 15 * 60
DEFAULT_BOOT_S = 300  # instance start, image pull, model and first pages fetched
DEFAULT_MAX_INSTANCES = 8
DEFAULT_HOURS_PER_INSTANCE = 2.0  # above this, split the work over more instances
CHOICES = ("none", "auto", *RENTED_GPUS)


@dataclass(frozen=True)
class GpuPrice:
    """A GPU the planner may rent: its throughput and the price now."""

    gpu: str  # t4 | l4
    usd_per_hour: Decimal
    lines_per_s: float
    throughput_source: str  # "measured" or "default"
    boot_s: int = DEFAULT_BOOT_S
    price_source: str = ""  # where the price came from (spot history, table, config)
    segment_s_per_page: float = 0.0  # layout analysis of one scan; 0: the GPU's default
    segment_source: str = "default"  # measured | default | config


@dataclass(frozen=True)
class Option:
    """One way to do the work."""

    name: str  # cpu | t4 | l4
    instances: int
    lines_per_s: float  # per instance
    throughput_source: str
    seconds: int  # wall time, boot included
    usd: Decimal
    usd_per_hour: Decimal  # per instance
    segment_s_per_page: float = 0.0  # layout analysis of one scan, on one instance
    segment_s: int = 0  # of `seconds`: layout analysis of every scan (over all instances)
    segment_source: str = "default"

    def to_json(self) -> dict[str, object]:
        return {"seconds": self.seconds, "usd": str(self.usd), "instances": self.instances,
                "lines_per_s": self.lines_per_s, "throughput_source": self.throughput_source,
                "usd_per_hour": str(self.usd_per_hour), "segment_s_per_page": self.segment_s_per_page,
                "segment_s": self.segment_s, "segment_source": self.segment_source}


@dataclass(frozen=True)
class PlanInputs:
    pages: int
    lines: int
    cpu_lines_per_s: float
    cpu_source: str  # measured | calibrated | default | config
    cpu_usd_per_hour: Decimal
    gpus: tuple[GpuPrice, ...]
    gpu: str = "auto"  # none | auto | t4 | l4
    instances: int | None = None  # fixed fleet size; None: the planner decides
    coffee_break_s: int = DEFAULT_COFFEE_BREAK_S
    deadline_s: int | None = None
    max_instances: int = DEFAULT_MAX_INSTANCES
    hours_per_instance: float = DEFAULT_HOURS_PER_INSTANCE
    scans: int = 0  # page images to segment first (frames of scans without XML)
    cpu_segment_s_per_page: float = DEFAULT_SEGMENT_S_PER_PAGE["cpu"]
    cpu_segment_source: str = "default"  # measured | calibrated | default | config


@dataclass(frozen=True)
class Plan:
    choice: str  # cpu | t4 | l4
    pages: int
    lines: int
    options: tuple[Option, ...] = field(default_factory=tuple)
    reason: str = ""
    scans: int = 0  # page images segmented first

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    @property
    def chosen(self) -> Option:
        return self.option(self.choice)

    def to_json(self) -> dict[str, object]:
        chosen = self.chosen
        return {"choice": self.choice, "pages": self.pages, "lines": self.lines, "scans": self.scans,
                "segment_s_per_page": chosen.segment_s_per_page, "segment_s": chosen.segment_s,
                "instances": chosen.instances, "reason": self.reason,
                "options": {o.name: o.to_json() for o in self.options}}


def _usd(seconds: float, usd_per_hour: Decimal, instances: int = 1) -> Decimal:
    raw = Decimal(instances) * Decimal(math.ceil(seconds)) * usd_per_hour / 3600  # exact before rounding up
    return raw.quantize(Decimal("0.0001"), ROUND_CEILING)


def cpu_option(lines: int, lines_per_s: float, source: str, usd_per_hour: Decimal, scans: int = 0,
               segment_s_per_page: float = 0.0, segment_source: str = "default") -> Option:
    segment_s = math.ceil(scans * segment_s_per_page)
    seconds = (math.ceil(lines / lines_per_s) if lines else 0) + segment_s
    return Option("cpu", 1, lines_per_s, source, seconds, _usd(seconds, usd_per_hour), usd_per_hour,
                  segment_s_per_page, segment_s, segment_source)


def gpu_segment_s_per_page(gpu: GpuPrice) -> float:
    return gpu.segment_s_per_page or DEFAULT_SEGMENT_S_PER_PAGE.get(gpu.gpu, DEFAULT_SEGMENT_S_PER_PAGE["t4"])


def _work_s(lines: int, scans: int, gpu: GpuPrice) -> float:
    """One instance's seconds for all the work: reading the lines and segmenting the scans."""
    return (lines / gpu.lines_per_s if lines else 0.0) + scans * gpu_segment_s_per_page(gpu)


def gpu_option(lines: int, gpu: GpuPrice, instances: int, scans: int = 0) -> Option:
    seconds = math.ceil(_work_s(lines, scans, gpu) / instances) + gpu.boot_s
    per_page = gpu_segment_s_per_page(gpu)
    return Option(gpu.gpu, instances, gpu.lines_per_s, gpu.throughput_source, seconds,
                  _usd(seconds, gpu.usd_per_hour, instances), gpu.usd_per_hour, per_page,
                  math.ceil(scans * per_page), gpu.segment_source)


def fleet_size(lines: int, gpu: GpuPrice, p: PlanInputs) -> int:
    """Instances for `gpu`: fixed, or enough to meet the deadline and the per-instance share."""
    if p.instances:
        return p.instances
    work_s = _work_s(lines, p.scans, gpu)
    n = max(1, math.ceil(work_s / (p.hours_per_instance * 3600)))
    if p.deadline_s is not None and p.deadline_s > gpu.boot_s:
        n = max(n, math.ceil(work_s / (p.deadline_s - gpu.boot_s)))
    elif p.deadline_s is not None:
        n = p.max_instances
    return min(n, p.max_instances)


def _minutes(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def plan(p: PlanInputs) -> Plan:
    """The choice and every option's time and cost; see the module docstring."""
    cpu = cpu_option(p.lines, p.cpu_lines_per_s, p.cpu_source, p.cpu_usd_per_hour, p.scans,
                     p.cpu_segment_s_per_page, p.cpu_segment_source)
    gpus = [gpu_option(p.lines, g, fleet_size(p.lines, g, p), p.scans) for g in p.gpus]
    options = (cpu, *gpus)

    def made(choice: str, reason: str) -> Plan:
        return Plan(choice, p.pages, p.lines, options, reason, p.scans)

    minutes = p.coffee_break_s / 60
    if p.gpu == "none":
        return made("cpu", "--gpu none")
    if p.gpu in RENTED_GPUS and any(o.name == p.gpu for o in gpus):
        return made(p.gpu, f"--gpu {p.gpu}")
    quick = cpu.seconds <= p.coffee_break_s and (p.deadline_s is None or cpu.seconds <= p.deadline_s)
    if quick and not p.instances:  # --instances N asks for a fleet
        return made("cpu", f"the CPU finishes in {_minutes(cpu.seconds)}, within the "
                    f"{minutes:g}-minute coffee break")
    if not gpus:
        return made("cpu", "no GPU offer to rent")
    meeting = [o for o in gpus if p.deadline_s is None or o.seconds <= p.deadline_s]
    if meeting:
        best = min(meeting, key=lambda o: (o.usd, o.seconds))
        why = (f"--instances {p.instances}: " if p.instances
               else f"the CPU would take {cpu.seconds / 3600:.1f} h; ")
        why += f"{best.name.upper()} is the cheapest GPU"
        if p.deadline_s is not None:
            why += f" that meets the {p.deadline_s / 3600:g} h deadline"
        return made(best.name, why)
    fastest = min(gpus, key=lambda o: (o.seconds, o.usd))
    hours = (p.deadline_s or 0) / 3600
    return made(fastest.name, f"no option meets the {hours:g} h deadline with at most "
                f"{p.max_instances} instances; {fastest.name.upper()} is the fastest")
