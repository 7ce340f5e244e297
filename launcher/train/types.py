"""What the train flow takes and gives: options in, a result out, and what it needs from outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from launcher.providers.base import Provider
from launcher.train.events import JobProgress
from launcher.train.ground_truth import compile_ground_truth, compile_kraken_ground_truth
from launcher.train.quote import DEFAULT_SCALING_PER_DOUBLING, GpuChoice, Quote
from ledger.book import Ledger
from ledger.idle import idle_usd


@dataclass(frozen=True)
class TrainOptions:
    data: tuple[Path, ...]
    preset: str = "default"
    epochs: int | None = None
    max_usd: Decimal | None = None
    max_restarts: int = 3
    yes: bool = False
    dry_run: bool = False
    detach: bool = False
    out: Path | None = None  # default runs/<job>
    job: str | None = None
    engine: str = "crnn"  # crnn | kraken (launcher/train/engine.py)
    kraken_spec: str | None = None  # kraken's VGSL spec (--kraken-spec); None: the preset's or kraken's


@dataclass
class TrainResult:
    job: str
    status: str  # done | failed | stopped | detached | dry-run
    quote: Quote | None
    run_dir: Path
    progress: JobProgress = field(default_factory=JobProgress)
    seconds: float = 0.0
    usd: Decimal = Decimal(0)
    attempts: int = 0
    message: str = ""
    interrupted: bool = False  # the user's Ctrl-C ended this run (stopped or detached): exit 130
    timings: dict[str, float] = field(default_factory=dict)  # launcher stages, seconds, summed
    attempt_timings: list[dict[str, float]] = field(default_factory=list)  # the same, per attempt
    gpu_choice: GpuChoice | None = None  # --gpu auto on AWS: what was chosen, what was skipped
    quoted_s: float | None = None  # the job's quote (also for a resumed job: from the ledger)
    quoted_usd: Decimal | None = None
    actual_s: float | None = None  # what the whole job took (all its sessions), once settled
    actual_usd: Decimal | None = None
    engine: str = "crnn"
    models: list[Path] = field(default_factory=list)  # the model files brought home

    @property
    def quote_error(self) -> float | None:
        """actual / quoted seconds - 1 (-0.08: 8 % quicker than quoted)."""
        if not self.quoted_s or self.actual_s is None:
            return None
        return self.actual_s / self.quoted_s - 1

    def time(self, stage: str, since: float) -> None:
        """Add the seconds since `since` (monotonic) to `stage`."""
        self.add(stage, time.monotonic() - since)

    def add(self, stage: str, seconds: float) -> None:
        """Add `seconds` to `stage`, in the sums and in the current attempt's figures."""
        for bucket in (self.timings, *self.attempt_timings[-1:]):
            bucket[stage] = bucket.get(stage, 0.0) + seconds

    @property
    def usd_per_epoch(self) -> Decimal | None:
        return self.usd / self.progress.epoch if self.progress.epoch else None

    @property
    def idle_usd(self) -> Decimal | None:
        util = self.progress.mean(self.progress.gpu_utils)
        return None if util is None else idle_usd(self.usd, util)


@dataclass
class TrainDeps:
    """What the flow needs from outside: the books, the provider, and how to talk to the user."""

    ledger: Ledger
    provider: Provider
    say: Callable[[str], None]
    confirm: Callable[[str], bool]  # a second Ctrl-C at the question raises KeyboardInterrupt
    compile_dataset: Callable[[list[Path], Path], int] = compile_ground_truth  # usable line count
    # --engine kraken: (ground truth, dataset folder, preset, --kraken-spec) -> training lines
    compile_kraken: Callable[[list[Path], Path, str, str | None], int] = compile_kraken_ground_truth
    after_job: Callable[[str], None] = lambda job: None  # alert checks
    default_lines_per_s: dict[str, float] | None = None  # [train.lines_per_s] overrides
    interactive: Callable[[], bool] = lambda: True  # a terminal to ask detach-or-stop on
    scaling_per_doubling: float = DEFAULT_SCALING_PER_DOUBLING  # [train]: N-GPU quotes (quote.py)
