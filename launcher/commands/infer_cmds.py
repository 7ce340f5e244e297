"""`gpuhire infer`: recognise pages here or on rented GPUs (launcher/infer/flow.py does the work)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launcher import completion
from launcher.context import app_context
from launcher.errors import InputError, SpecError
from launcher.output import confirm, print_json, usd

if TYPE_CHECKING:
    from launcher.infer.types import InferResult
    from ledger.compare import Comparison



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


def summary(result: InferResult, comparison: Comparison | None = None) -> str:
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
    if result.segmented:
        lines.insert(3, f"  layout        {result.segmented:,} page images segmented, "
                        f"{result.segment_s / result.segmented:.1f} s each")
    if comparison is not None:  # what the same pages would have cost at a commercial service
        lines += [f"  compare       {comparison.line}", f"                {comparison.per_1000_line}"]
    if cpu_s is not None and result.plan and result.plan.choice != "cpu":
        lines.append(f"  on this CPU   about {duration(cpu_s)}")
    for key, reason in sorted(result.dead.items())[:10]:
        lines.append(f"  failed        {key}: {reason}")
    lines.append(f"  output        {result.out}")
    return "\n".join(lines)


def infer(
    ctx: typer.Context,
    pages: Annotated[list[Path], typer.Argument(
        metavar="PAGES",
        help="Page scans (JPEG, PNG, TIFF, PDF), PAGE/ALTO XML files (with their images), line images, "
             "or folders of them.")],
    model: Annotated[Path, typer.Option(
        metavar="FILE", help="The recognition model: RUN/model.pt from gpuhire train, or a kraken model "
                             "(.mlmodel, .safetensors).")],
    out: Annotated[Path, typer.Option(
        metavar="DIR", help="Output folder: XML with TextEquiv, plain text.")] = Path("recognised"),
    gpu: Annotated[str, typer.Option(
        metavar="none|auto|t4|l4", autocompletion=completion.infer_gpus,
        help="none (this CPU), auto (the planner decides), t4 or l4.")] = "auto",
    instances: Annotated[int | None, typer.Option(
        min=1, max=100, metavar="N", help="Fleet size (default: planned).")] = None,
    deadline: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Finish within this time, e.g. 2h or 90m.")] = None,
    plan_only: Annotated[bool, typer.Option(help="Print the plan and quote; recognise nothing.")] = False,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="text|json", autocompletion=completion.text_formats,
        help="text or json (the plan or the result).")] = "text",
    int8: Annotated[bool, typer.Option(help="int8 dynamic quantisation (CPU workers only).")] = False,
    calibrate: Annotated[bool, typer.Option(
        help="Measure this CPU on a few pages when no speed is known yet.")] = True,
    fleet: Annotated[str | None, typer.Option(
        metavar="aws|local", autocompletion=completion.fleets,
        help="Where fleet workers run: aws, or local processes (trying the queue path).")] = None,
    input_mode: Annotated[str, typer.Option(
        "--input", metavar="auto|pages|lines", autocompletion=completion.input_modes,
        help="Images without XML: auto (page scans or line images, by their shape), pages (all are "
             "page scans: found lines first) or lines (each is one line).")] = "auto",
    output_format: Annotated[str, typer.Option(
        metavar="page|alto", autocompletion=completion.output_formats,
        help="Layout written for page scans: PAGE XML 2019 or ALTO 4.")] = "page",
    segment_model: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Your kraken segmentation model (default: kraken's bundled one).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before renting.")] = False,
) -> None:
    """Recognise pages: on this CPU when that is quick, else on rented spot GPUs, no page lost.

    Page scans without XML are segmented first (kraken's layout analysis), then read line by line;
    each gets PAGE XML (or ALTO) with its text, and plain text. A page that cannot be read, or where
    no line is found, is named in OUT/dead-letter.json, and the exit status is 1.

    Example:  gpuhire infer scans/ --model runs/first-model/model.pt --out recognised --plan-only
              gpuhire infer pages/ --model my-kraken-model.mlmodel --gpu none
    """
    from launcher.infer.flow import infer as run_infer
    from launcher.infer.plan import CHOICES
    from launcher.infer.types import InferOptions

    if gpu not in CHOICES:
        raise InputError(f"--gpu {gpu!r} is unknown", "use --gpu none, auto, t4 or l4")
    if fmt not in ("text", "json"):
        raise InputError(f"--format {fmt!r} is unknown", "use --format text or json")
    if input_mode not in completion.INPUT_MODES:
        raise InputError(f"--input {input_mode!r} is unknown", "use --input auto, pages or lines")
    if output_format not in completion.OUTPUT_FORMATS:
        raise InputError(f"--output-format {output_format!r} is unknown", "use --output-format page or alto")
    app = app_context(ctx)
    kind = fleet or app.settings.infer.fleet
    if kind not in ("aws", "local"):
        raise InputError(f"--fleet {kind!r} is unknown", "use --fleet aws or local")
    if int8 and gpu not in ("none", "auto") and kind == "aws":  # a local fleet's workers are CPUs
        raise SpecError(f"--int8 runs on CPUs only, not on a --gpu {gpu} fleet",
                         "drop --int8, or pass --gpu none")
    opts = InferOptions(inputs=tuple(pages), model=model, out=out, gpu=gpu, instances=instances,
                        deadline_s=parse_duration(deadline), plan_only=plan_only, yes=yes, int8=int8,
                        calibrate=calibrate, fleet=kind, input_mode=input_mode, output_format=output_format,
                        segment_model=segment_model)
    from launcher.infer.setup import infer_deps

    deps = infer_deps(app.settings, app.ledger, fleet_kind=kind, out=out,
                      say=lambda m: typer.echo(m, err=True), confirm=confirm, bar=RichBar(), model=model)
    result = run_infer(opts, deps)
    from ledger.compare import commercial_comparison

    comparison = commercial_comparison(result.done, result.usd, app.settings.compare)
    if fmt == "json":
        print_json(_json(result, comparison))
    elif result.status not in ("plan", "nothing-to-do", "stopped"):
        typer.echo(summary(result, comparison))
    if result.status == "partial":
        raise typer.Exit(1)


def _json(result: InferResult, comparison: Comparison | None = None) -> dict[str, object]:
    if result.status == "plan" and result.plan is not None:
        return result.plan.to_json()
    return {"job": result.job, "status": result.status, "pages": result.pages, "skipped": result.skipped,
            "done": result.done, "dead": [{"page": k, "reason": v} for k, v in sorted(result.dead.items())],
            "lines": result.lines, "seconds": round(result.seconds, 3), "usd": result.usd,
            "usd_per_1000_pages": result.usd_per_1000_pages, "workers": result.workers,
            "segmented": result.segmented, "segment_s": round(result.segment_s, 3),
            "plan": result.plan.to_json() if result.plan else None, "out": str(result.out),
            "compare": comparison.as_json() if comparison is not None else None}


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)
