"""What the infer flow takes and gives: options in, a result out, and what it needs from outside
(`launcher.infer.setup.infer_deps` fills that in from the settings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from launcher.infer.plan import GpuPrice, Plan
from ledger.book import Ledger

if TYPE_CHECKING:
    from launcher.infer.queue import Fleet
    from launcher.providers.base import Workers, WorkerSpec


class Bar(Protocol):
    """A progress display over pages (rich in the CLI, a recorder in tests)."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, pages: int, usd: Decimal | None = None) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class InferOptions:
    inputs: tuple[Path, ...]
    model: Path
    out: Path
    gpu: str = "auto"  # none | auto | t4 | l4
    instances: int | None = None
    deadline_s: int | None = None
    plan_only: bool = False
    yes: bool = False
    int8: bool = False
    calibrate: bool = True
    fleet: str = "aws"  # where fleet workers run: aws | local
    job: str | None = None
    input_mode: str = "auto"  # auto | pages | lines: which images without XML are page scans
    output_format: str = "page"  # page | alto: the layout written for page scans
    segment_model: Path | None = None  # the user's kraken segmentation model (default: kraken's blla)


@dataclass
class InferResult:
    job: str
    status: str  # done | partial | plan | nothing-to-do | stopped
    plan: Plan | None
    out: Path
    pages: int = 0  # pages asked for
    skipped: int = 0  # done already (manifest)
    done: int = 0
    dead: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    seconds: float = 0.0
    usd: Decimal = Decimal(0)
    workers: int = 0
    segmented: int = 0  # page images (scan frames) segmented
    segment_s: float = 0.0  # seconds of layout analysis (per worker, summed)

    @property
    def usd_per_1000_pages(self) -> Decimal | None:
        return self.usd * 1000 / self.done if self.done else None


@dataclass
class InferDeps:
    ledger: Ledger
    say: Callable[[str], None]
    confirm: Callable[[str], bool]
    bar: Bar
    gpu_prices: Callable[[], list[GpuPrice]]  # offers now (may be empty)
    cpu_usd_per_hour: Decimal
    cpu_rules: object  # BillingRules of the local provider
    make_fleet: Callable[[str, Plan], tuple[Fleet, Callable[[WorkerSpec], Workers]]] | None = None
    cpu_lines_per_s: float | None = None  # [infer.lines_per_s] cpu: overrides measuring
    cpu_segment_s_per_page: float | None = None  # [infer.segment_s_per_page] cpu: overrides measuring
    plan_settings: dict[str, object] = field(default_factory=dict)  # coffee break, max instances
    after_job: Callable[[str], None] = lambda job: None
    results_s3: Callable[[], object] | None = None  # S3 client: a rerun collects a dead launcher's fleet
