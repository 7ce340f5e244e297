"""`gpuhire infer`: recognise pages here or on rented GPUs (launcher/infer/flow.py does the work)."""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launcher.context import AppContext, app_context
from launcher.errors import InputError
from launcher.output import print_json, usd

if TYPE_CHECKING:
    from launcher.infer.flow import InferDeps, InferResult
    from launcher.infer.plan import GpuPrice

GPU_CHOICES = ("none", "auto", "t4", "l4")


def parse_duration(text: str | None) -> int | None:
    """'90m', '2h', '1h30m', '45s' or plain seconds -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not text.strip() or match is None or not any(match.groups()):
        raise InputError(f"--deadline {text!r} is not a duration", "write it like --deadline 2h or 90m")
    h, m, s = (int(g or 0) for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise InputError("--deadline must be above 0", "write it like --deadline 2h or 90m")
    return seconds


class RichBar:
    """A rich progress bar over pages (with USD so far) on stderr."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.stop()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("pages"), TextColumn("{task.fields[usd]}"),
                                  TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, usd="")

    def advance(self, pages: int, spent: Decimal | None = None) -> None:
        if self._progress is not None:
            fields = {"usd": usd(spent, 4)} if spent is not None else {}
            self._progress.update(self._task, advance=pages, **fields)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _gpu_prices(app: AppContext, live: bool) -> list[GpuPrice]:
    """The cheapest offer per GPU now: live spot prices with AWS (`live`), else the bundled table."""
    from launcher.infer.plan import DEFAULT_INFER_LINES_PER_S, GpuPrice

    settings = app.settings
    rates = {**DEFAULT_INFER_LINES_PER_S, **settings.infer.lines_per_s}
    prices: list[GpuPrice] = []
    for gpu in ("t4", "l4"):
        measured = app.ledger.measured_lines_per_s("infer", gpu)
        rate, source = (measured, "measured") if measured else (rates[gpu], "default")
        if live:
            from launcher.providers.aws.provider import AwsProvider

            offers = AwsProvider(settings, app.ledger).offers(gpu)
            if not offers:
                continue
            best = offers[0]
            usd_per_hour, where = best.usd_per_hour, f"{best.market} {best.instance_type} {best.zone}"
        else:
            from launcher.providers.aws.offers import type_table

            table = type_table(settings.aws.on_demand_usd_per_hour)
            usd_per_hour = min(t.on_demand_usd_per_hour for t in table.values() if t.gpu == gpu)
            where = "on-demand table (no live spot prices)"
        prices.append(GpuPrice(gpu, usd_per_hour, rate, source, settings.infer.boot_s, where))
    return prices


def _aws_configured(app: AppContext) -> bool:
    aws = app.settings.aws
    return bool(aws.bucket or aws.instance_profile)


def _fleet_maker(app: AppContext, fleet_kind: str, out: Path) -> Any:
    """Makes the job's Fleet (queues, bucket) and its worker backend; None without a bucket."""
    settings = app.settings
    if not settings.aws.bucket:
        return None

    def make(job: str, plan: Any) -> Any:
        from launcher.infer.queue import Fleet, FleetSettings
        from launcher.infer.workers import AwsFleet, LocalFleet
        from launcher.providers.aws.provider import AwsProvider

        s = settings.infer
        fleet_settings = FleetSettings(batch_pages=s.batch_pages, visibility_s=s.visibility_s,
                                       max_receives=s.max_receives, retry_delay_s=s.retry_delay_s,
                                       idle_exit_s=s.idle_exit_s, batch_timeout_s=s.batch_timeout_s)
        aws = AwsProvider(settings, app.ledger)
        fleet = Fleet(aws.client("s3"), aws.client("sqs"), settings.aws.bucket or "", job, fleet_settings)
        out_state = out / ".gpuhire" / "workers"

        def backend(spec: Any) -> Any:
            if fleet_kind == "local":
                return LocalFleet(spec, app.ledger, out_state, settings.local.watts / Decimal(1000)
                                  * settings.ownership.usd_per_kwh, settings.billing_rules("local"),
                                  device="cpu")
            from launcher.providers.aws.renter import resolve_image

            image = resolve_image(settings.train.image, settings.aws.ecr_repository_url)
            return AwsFleet(spec, aws, plan.choice, image)

        return fleet, backend

    return make


def _deps(app: AppContext, fleet_kind: str, out: Path) -> InferDeps:
    from launcher.commands.alerts_cmds import check_after_recording
    from launcher.infer.flow import InferDeps

    settings = app.settings

    def confirm(question: str) -> bool:
        if not sys.stdin.isatty():
            raise InputError(f"{question} needs an answer", "pass --yes to go ahead without asking")
        return typer.confirm(question, default=False)

    maker = _fleet_maker(app, fleet_kind, out)
    s = settings.infer
    return InferDeps(
        ledger=app.ledger, say=lambda m: typer.echo(m, err=True), confirm=confirm, bar=RichBar(),
        gpu_prices=lambda: _gpu_prices(app, live=fleet_kind == "aws" and _aws_configured(app)),
        cpu_usd_per_hour=settings.local.watts / Decimal(1000) * settings.ownership.usd_per_kwh,
        cpu_rules=settings.billing_rules("local"), make_fleet=maker,
        cpu_lines_per_s=s.lines_per_s.get("cpu"),
        plan_settings={"coffee_break_s": int(s.coffee_break_minutes * 60), "max_instances": s.max_instances,
                       "hours_per_instance": s.hours_per_instance},
        after_job=lambda job: check_after_recording(app),
    )


def summary(result: InferResult) -> str:
    from launcher.infer.flow import duration

    cpu_s = result.plan.option("cpu").seconds if result.plan else None
    per_k = result.usd_per_1000_pages
    lines = [
        f"job {result.job}: {result.status}",
        f"  pages         {result.done:,} recognised"
        + (f", {result.skipped:,} done before" if result.skipped else "")
        + (f", {len(result.dead):,} failed (see {result.out / 'dead-letter.json'})" if result.dead else ""),
        f"  time          {duration(result.seconds)} on {result.workers} worker(s)",
        f"  cost          {usd(result.usd, 4)}" + (f"  ({usd(per_k, 4)} per 1,000 pages)" if per_k else ""),
    ]
    if cpu_s is not None and result.plan and result.plan.choice != "cpu":
        lines.append(f"  on this CPU   about {duration(cpu_s)}")
    for key, reason in sorted(result.dead.items())[:10]:
        lines.append(f"  failed        {key}: {reason}")
    lines.append(f"  output        {result.out}")
    return "\n".join(lines)


def infer(
    ctx: typer.Context,
    pages: Annotated[list[Path], typer.Argument(
        help="PAGE/ALTO XML files (with their images), line images, or folders of them.")],
    model: Annotated[Path, typer.Option(help="The trained model (RUN/model.pt).")],
    out: Annotated[Path, typer.Option(
        help="Output folder: XML with TextEquiv, plain text.")] = Path("recognised"),
    gpu: Annotated[str, typer.Option(help="none (this CPU), auto (the planner decides), t4 or l4.")] = "auto",
    instances: Annotated[int | None, typer.Option(
        min=1, max=100, help="Fleet size (default: planned).")] = None,
    deadline: Annotated[str | None, typer.Option(help="Finish within this time, e.g. 2h or 90m.")] = None,
    plan_only: Annotated[bool, typer.Option(help="Print the plan and quote; recognise nothing.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="text or json (the plan or the result).")] = "text",
    int8: Annotated[bool, typer.Option(help="int8 dynamic quantisation (CPU workers only).")] = False,
    calibrate: Annotated[bool, typer.Option(
        help="Measure this CPU on a few pages when no speed is known yet.")] = True,
    fleet: Annotated[str | None, typer.Option(
        help="Where fleet workers run: aws, or local processes (trying the queue path).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before renting.")] = False,
) -> None:
    """Recognise pages: on this CPU when that is quick, else on rented spot GPUs, no page lost.

    Example:  gpuhire infer scans/ --model runs/first-model/model.pt --out recognised --plan-only
    """
    from launcher.infer.flow import InferOptions
    from launcher.infer.flow import infer as run_infer

    if gpu not in GPU_CHOICES:
        raise InputError(f"--gpu {gpu!r} is unknown", "use --gpu none, auto, t4 or l4")
    if fmt not in ("text", "json"):
        raise InputError(f"--format {fmt!r} is unknown", "use --format text or json")
    app = app_context(ctx)
    kind = fleet or app.settings.infer.fleet
    if kind not in ("aws", "local"):
        raise InputError(f"--fleet {kind!r} is unknown", "use --fleet aws or local")
    opts = InferOptions(inputs=tuple(pages), model=model, out=out, gpu=gpu, instances=instances,
                        deadline_s=parse_duration(deadline), plan_only=plan_only, yes=yes, int8=int8,
                        calibrate=calibrate, fleet=kind)
    result = run_infer(opts, _deps(app, kind, out))
    if fmt == "json":
        print_json(_json(result))
    elif result.status not in ("plan", "nothing-to-do", "stopped"):
        typer.echo(summary(result))
    if result.status == "partial":
        raise typer.Exit(1)


def _json(result: InferResult) -> dict[str, object]:
    if result.status == "plan" and result.plan is not None:
        return result.plan.to_json()
    return {"job": result.job, "status": result.status, "pages": result.pages, "skipped": result.skipped,
            "done": result.done, "dead": [{"page": k, "reason": v} for k, v in sorted(result.dead.items())],
            "lines": result.lines, "seconds": round(result.seconds, 3), "usd": result.usd,
            "usd_per_1000_pages": result.usd_per_1000_pages, "workers": result.workers,
            "plan": result.plan.to_json() if result.plan else None, "out": str(result.out)}


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)
