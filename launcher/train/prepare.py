"""Before anything is rented: the ground truth checked and compiled for the job's engine, and
the quote (launcher/train/quote.py) said; `--dry-run` stops after them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from launcher.errors import BudgetError, SpecError
from launcher.rundir import RunDir
from launcher.train.engine import kraken_model_size
from launcher.train.quote import (
    GpuChoice,
    Quote,
    Throughput,
    calibrated_throughput,
    choose_for_job,
    job_model_size,
    job_throughput,
    quote,
)
from launcher.train.types import TrainDeps, TrainOptions, TrainResult


def prepare(opts: TrainOptions, deps: TrainDeps, dataset: Path) -> int:
    """Check and compile the ground truth locally into `dataset` for the job's engine (kraken:
    its binary dataset, compiled once and shipped once); nothing is rented before this passes."""
    for path in opts.data:
        if not path.exists():
            raise SpecError(f"ground truth {path} does not exist", "check the path you gave")
    if opts.engine == "kraken":
        return deps.compile_kraken(list(opts.data), dataset, opts.preset, opts.kraken_spec)
    return deps.compile_dataset(list(opts.data), dataset)


def size_of(opts: TrainOptions, dataset: Path) -> str:
    """The model size the quote looks throughput up by (and the ledger records)."""
    if opts.engine == "kraken":
        return kraken_model_size(opts.preset, opts.kraken_spec)
    return job_model_size(opts.preset, dataset)


def job_quote(job: str, lines: int, epochs: int, opts: TrainOptions, deps: TrainDeps,
              dataset: Path) -> tuple[Quote, GpuChoice | None]:
    """The quote for this job's engine and model size on the plan's GPU, said; with `--gpu
    auto` on AWS, the GPU type chosen for this job first. BudgetError when the quote is above
    --max-usd."""
    size = size_of(opts, dataset)
    engine = opts.engine
    choice = choose_for_job(deps.provider, deps.ledger, lines * epochs, size, deps.default_lines_per_s,
                            deps.scaling_per_doubling, engine=engine)
    plan = deps.provider.plan()
    gpus = int(plan.machine.get("gpus", 1))  # --gpus N: N GPUs' throughput (quote.py)

    def calibrate() -> Throughput | None:  # only this machine's CPU can be measured before a run
        if deps.provider.name != "local" or plan.gpu != "cpu" or engine != "crnn":
            return None  # kraken: its documented default until a kraken job has run here
        deps.say("calibrating: a few training steps on this CPU to measure its speed")
        return calibrated_throughput(dataset, opts.preset)

    rate = job_throughput(deps.ledger, plan.gpu, size, calibrate=calibrate,
                          overrides=deps.default_lines_per_s, gpus=gpus,
                          per_doubling=deps.scaling_per_doubling, engine=engine)
    q = quote(gpu=plan.gpu, lines=lines, epochs=epochs, usd_per_hour=plan.usd_per_hour,
              overhead_s=plan.overhead_s, throughput=rate, size=size, gpus=gpus, engine=engine)
    deps.say(f"job {job}: {lines:,} usable lines, {engine} engine, {deps.provider.name} / {plan.gpu}")
    if choice is not None:
        deps.say(choice.describe())
    deps.say(f"plan: {plan.description}")
    deps.say(f"quote: {q.describe()}")
    if opts.max_usd is not None and q.usd > opts.max_usd:
        raise BudgetError(
            f"the quote ${q.usd} is above --max-usd {opts.max_usd}; nothing was rented",
            "raise --max-usd, train fewer --epochs, or pick a cheaper --gpu",
        )
    return q, choice


def dry_run(job: str, run: RunDir, epochs: int, opts: TrainOptions, deps: TrainDeps) -> TrainResult:
    """Check, compile and quote, leaving nothing behind: the data compiles into a temporary
    folder, and the run folder is only checked, never made."""
    run.check_new(job)
    with tempfile.TemporaryDirectory(prefix="gpuhire-dry-run-") as tmp:
        lines = prepare(opts, deps, Path(tmp) / "dataset")
        q, choice = job_quote(job, lines, epochs, opts, deps, Path(tmp) / "dataset")
    deps.say("dry run: nothing rented, nothing written")
    return TrainResult(job, "dry-run", q, run.path, gpu_choice=choice,
                       quoted_s=float(q.seconds), quoted_usd=q.usd, engine=opts.engine)
