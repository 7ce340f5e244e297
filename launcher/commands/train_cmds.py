"""`gpuhire train`, `logs`, `attach`, `resume`."""

from __future__ import annotations

import sys
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from launcher import completion
from launcher.context import AppContext, app_context
from launcher.errors import InputError
from launcher.output import confirm, print_json, usd

if TYPE_CHECKING:
    from launcher.providers.base import Provider
    from launcher.train.types import TrainDeps, TrainResult


def _decimal(text: str | None, flag: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{flag} {text!r} is not a number", f"write it like {flag} 5.00") from None
    if value <= 0:
        raise InputError(f"{flag} must be above 0", f"write it like {flag} 5.00")
    return value


def _deps(app: AppContext, provider: Provider) -> TrainDeps:
    from launcher.train.types import TrainDeps
    from ledger.alerts.check import check_quietly

    def say(text: str) -> None:
        typer.echo(text, err=True)

    def ask(question: str) -> bool:
        try:
            return confirm(question)
        except typer.Abort:  # Ctrl-C (or end of input) at the question
            typer.echo("")  # end the question's line
            raise KeyboardInterrupt from None  # the flow decides: stop, exit 130

    return TrainDeps(
        ledger=app.ledger, provider=provider, say=say, confirm=ask,
        after_job=lambda job: check_quietly(app.ledger, app.settings, say),
        default_lines_per_s=app.settings.train.lines_per_s or None,
        interactive=sys.stdin.isatty,
        scaling_per_doubling=app.settings.train.scaling_per_doubling,
    )


def _exit(result: TrainResult, fmt: str = "text") -> None:
    """The summary (or its JSON), then the exit code: 130 when the user's Ctrl-C ended the run,
    1 failed."""
    if fmt == "json":
        print_json(result_dict(result))
    else:
        typer.echo(summary(result))
    if result.interrupted:
        raise typer.Exit(130)
    if result.status == "failed":
        raise typer.Exit(1)


def _engine_and_preset(app: AppContext, engine: str | None, preset: str | None,
                       kraken_spec: str | None) -> tuple[str, str, str | None]:
    """(engine, checked preset, kraken spec) from the flags over [train]: one line for an
    unknown engine, a preset of the other engine, or a --kraken-spec without kraken."""
    from launcher.train.engine import check_engine, check_kraken_spec, checked_kraken_preset
    from launcher.train.ground_truth import checked_preset

    config = f"in {app.config_path or 'the config file'}"
    train = app.settings.train
    name = check_engine(engine) if engine is not None else train.engine
    if name != "kraken":
        if kraken_spec is not None:
            raise InputError("--kraken-spec is for --engine kraken",
                             "add --engine kraken, or leave --kraken-spec out")
        where = "--preset" if preset else f"[train] preset {config}"
        return name, checked_preset(preset or train.preset, where), None
    if train.gpus > 1:
        raise InputError(f"--engine kraken trains on one GPU, not --gpus {train.gpus}",
                         "pass --gpus 1 (or use --engine crnn for several GPUs)")
    # [train] preset names the CRNN's preset: the kraken engine takes --preset only
    checked = checked_kraken_preset(preset, "--preset")
    spec = kraken_spec if kraken_spec is not None else train.kraken_spec
    where = "--kraken-spec" if kraken_spec is not None else f"[train] kraken_spec {config}:"
    return name, checked, None if spec is None else check_kraken_spec(spec, where)


def _check_local_gpu(gpu: str) -> None:
    """The local provider trains on what this machine has: a --gpu naming a GPU where there is
    no CUDA device would quote and record a card that is not there."""
    if gpu.lower() in ("auto", "cpu"):
        return
    from jobs.htr.hardware import pick_device  # torch: only when a GPU is asked for

    if pick_device("auto").type != "cuda":
        raise InputError(f"--gpu {gpu}: the local provider runs on what this machine has (cpu here)",
                         "pass --gpu cpu or auto")


def _with_gpus(app: AppContext, gpus: int | None, fallback: bool | None) -> AppContext:
    """The settings with --gpus / --gpus-fallback in [train] (flags over the config file), so
    every provider made from them rents and runs that many."""
    from launcher.train.gpus import check_gpus

    train = app.settings.train
    update: dict[str, object] = {}
    if gpus is not None:
        update["gpus"] = check_gpus(gpus)
    if fallback is not None:
        update["gpus_fallback"] = fallback
    if not update:
        return app
    settings = app.settings.model_copy(update={"train": train.model_copy(update=update)})
    return replace(app, _settings=settings)


def _fit_gpus(provider: Provider, gpus: int, gpu: str) -> None:
    """Point a provider at `gpus` GPUs: the local one decides GPUs or CPU processes (one line
    when this machine has fewer GPUs than asked); ssh runs one process."""
    if gpus == 1:
        return
    if provider.name == "ssh":
        raise InputError(f"--gpus {gpus} is not supported with --provider ssh",
                         "use --provider aws or local, or --gpus 1")
    if provider.name == "local":
        from launcher.providers.local import LocalProvider
        from launcher.train.gpus import local_device

        assert isinstance(provider, LocalProvider)
        provider.use_gpus(gpus, local_device(gpus, provider.gpu if gpu in ("auto", "") else gpu,
                                             _cuda_devices()))


def _cuda_devices() -> int:
    """CUDA GPUs on this machine (torch: only when --gpus asks for more than one)."""
    try:
        from jobs.htr.ddp import cuda_devices
    except ImportError:  # no trainer (torch) here: no GPU it could use either
        return 0
    return cuda_devices()


def span(seconds: float) -> str:
    """`45 s`, `4 min`, `3 min 40 s`, `2 h 5 min`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        mins, secs = divmod(whole, 60)
        return f"{mins} min" + (f" {secs} s" if secs else "")
    hours, mins = divmod(round(whole / 60), 60)
    return f"{hours} h" + (f" {mins} min" if mins else "")


def quote_line(result: TrainResult) -> str:
    """`quoted 4 min / $0.0012, took 3 min 40 s / $0.0011 (-8 %)`."""
    assert result.quoted_s is not None and result.actual_s is not None
    error = result.quote_error
    return (f"quoted {span(result.quoted_s)} / {usd(result.quoted_usd, 4)}, took "
            f"{span(result.actual_s)} / {usd(result.actual_usd, 4)}"
            + ("" if error is None else f" ({error:+.0%})".replace("%", " %")))


def result_dict(result: TrainResult) -> dict[str, object]:
    """`gpuhire train --format json` (docs/train.md): the quote, the --gpu auto choice, the end,
    the engine and the model files brought home."""
    return {"job": result.job, "status": result.status, "message": result.message,
            "engine": result.engine, "models": [str(m) for m in result.models],
            "quote": None if result.quote is None else result.quote.to_dict(),
            "gpu_choice": None if result.gpu_choice is None else result.gpu_choice.to_dict(),
            "quoted_s": result.quoted_s, "quoted_usd": result.quoted_usd,
            "actual_s": None if result.actual_s is None else round(result.actual_s, 1),
            "actual_usd": result.actual_usd, "quote_error": None if result.quote_error is None
            else round(result.quote_error, 4),
            "epochs": result.progress.epoch, "best_cer": result.progress.best_cer,
            "attempts": result.attempts, "run_dir": str(result.run_dir)}


def summary(result: TrainResult) -> str:
    p = result.progress
    per_epoch = result.usd_per_epoch
    util = p.mean(p.gpu_utils)
    lines = [
        f"job {result.job}: {result.status}" + (f" ({result.message})" if result.message else ""),
        f"  time          {result.seconds / 60:.1f} min over {result.attempts} attempt(s)",
        f"  cost          {usd(result.usd, 4)}"
        + (f"  ({usd(per_epoch, 4)} per epoch)" if per_epoch is not None else ""),
        f"  epochs        {p.epoch}",
        f"  best CER      {'-' if p.best_cer is None else f'{p.best_cer:.4f}'}",
        f"  GPU use       {'-' if util is None else f'{util:.0%}'}"
        + ("" if result.idle_usd is None else f"  ({usd(result.idle_usd, 4)} on an idle GPU)"),
    ]
    if result.quoted_s is not None and result.actual_s is not None:
        lines.append(f"  quote         {quote_line(result)}")
    lines.append(f"  engine        {result.engine}")
    for model in result.models:  # a dry run, a stopped or a detached job has none (yet)
        lines.append(f"  model         {model}")
    return "\n".join(lines)


def train(
    ctx: typer.Context,
    data: Annotated[list[Path], typer.Argument(
        metavar="DATA",
        help="Ground truth: PAGE XML, ALTO, image+.gt.txt folders, or a compiled dataset.")],
    gpu: Annotated[str, typer.Option(
        metavar="t4|l4|auto", autocompletion=completion.train_gpus,
        help="t4, l4 or auto (local: what the ledger records).")] = "auto",
    provider: Annotated[str, typer.Option(
        metavar="auto|local|ssh|aws", autocompletion=completion.train_providers,
        help="aws, local, ssh or auto (aws when configured).")] = "auto",
    host: Annotated[str | None, typer.Option(
        metavar="NAME", help="The [hosts.NAME] for --provider ssh.")] = None,
    spot: Annotated[bool, typer.Option("--spot/--on-demand", help="Spot (cheaper) or on-demand.")] = True,
    max_usd: Annotated[str | None, typer.Option(
        metavar="USD", help="Hard cap in USD: refuse a dearer quote, stop a job that passes it.")] = None,
    max_restarts: Annotated[int | None, typer.Option(
        metavar="N", help="Relaunches after spot interruptions.")] = None,
    preset: Annotated[str | None, typer.Option(
        metavar="PRESET", autocompletion=completion.presets,
        help="Trainer preset: tiny, small, default, large (crnn), kraken, or a .toml file of "
        "your own.")] = None,
    engine: Annotated[str | None, typer.Option(
        metavar="crnn|kraken", autocompletion=completion.engines,
        help="Training engine: crnn (gpuhire's own) or kraken (kraken's trainer; safetensors "
        "and CoreML models). Default [train] engine: crnn.")] = None,
    kraken_spec: Annotated[str | None, typer.Option(
        metavar="SPEC", help="kraken's VGSL network spec (--engine kraken; default: the "
        "preset's, else kraken's own model).")] = None,
    epochs: Annotated[int | None, typer.Option(
        metavar="N", help="Epochs to train (default: a .toml preset's own, else config: 50).")] = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Run directory (default runs/<job>).")] = None,
    detach: Annotated[bool, typer.Option(
        help="Start the job and return; `gpuhire attach JOB` follows it.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before renting.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and quote; rent nothing.")] = False,
    gpus: Annotated[int | None, typer.Option(
        metavar="N", help="GPUs per box: 1, 2, 4 or 8 (torchrun, one process per GPU; "
        "default [train] gpus: 1).")] = None,
    gpus_fallback: Annotated[bool | None, typer.Option(
        "--gpus-fallback/--no-gpus-fallback",
        help="Without N-GPU capacity, take a box with fewer GPUs (default [train] gpus_fallback).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="text|json", autocompletion=completion.text_formats,
        help="text or json (the quote, the --gpu auto choice and the result).")] = "text",
) -> None:
    """Train an HTR model: check the ground truth, quote, rent, follow, bring the model home
    (--engine kraken: kraken's own trainer, models in safetensors and CoreML).

    Example:  gpuhire train gt/ --provider local --preset small --epochs 20 --yes
    """
    from launcher.providers.factory import make_provider
    from launcher.rundir import new_job_id
    from launcher.train.engine import preset_epochs
    from launcher.train.flow import train as run_train
    from launcher.train.types import TrainOptions

    if fmt not in ("text", "json"):
        raise InputError(f"--format {fmt!r} is unknown", "use --format text or json")
    app = _with_gpus(app_context(ctx), gpus, gpus_fallback)
    settings = app.settings
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs {epochs} trains nothing", "give --epochs 1 or more")
    if max_restarts is not None and max_restarts < 0:
        raise InputError(f"--max-restarts {max_restarts} is below 0",
                         "give --max-restarts 0 (never relaunch) or more")
    engine, checked, spec = _engine_and_preset(app, engine, preset, kraken_spec)
    cap = _decimal(max_usd, "--max-usd")
    job = new_job_id()
    run_root = out or Path.cwd() / "runs" / job
    chosen = make_provider(settings, app.ledger, provider, gpu=gpu, run_root=run_root, host=host, spot=spot)
    if chosen.name == "local":
        _check_local_gpu(gpu)
    _fit_gpus(chosen, settings.train.gpus, gpu)
    if epochs is None:  # --epochs, else the preset file's own, else [train] epochs
        epochs = preset_epochs(checked, engine) or settings.train.epochs
    opts = TrainOptions(
        data=tuple(data), preset=checked, epochs=epochs, max_usd=cap,
        max_restarts=settings.train.max_restarts if max_restarts is None else max_restarts,
        yes=yes, dry_run=dry_run, detach=detach, out=run_root, job=job, engine=engine, kraken_spec=spec,
    )
    _exit(run_train(opts, _deps(app, chosen)), fmt)


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing as the log grows, until the job ends.")] = False,
    runs: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Folder holding runs/<job> (default ./runs).")] = None,
) -> None:
    """Print a job's trainer log: a running ssh or aws job's live from its box (over SSH),
    else from its run directory.

    Example:  gpuhire logs train-20261122-1402-a3f9 -f
    """
    import codecs

    from launcher.status import JobLog

    app = app_context(ctx)
    log = JobLog(app.ledger, app.settings, job, runs)
    text = codecs.getincrementaldecoder("utf-8")("replace")  # a character split between reads
    for chunk in log.chunks(follow):
        sys.stdout.write(text.decode(chunk))
        sys.stdout.flush()
    sys.stdout.write(text.decode(b"", final=True))
    if log.note:
        typer.echo(log.note, err=True)


def _pick_up(ctx: typer.Context, job: str, runs: Path | None, attach_only: bool,
             max_usd: Decimal | None = None, gpus: int | None = None) -> None:
    from launcher.providers.factory import make_provider
    from launcher.status import find_run_dir
    from launcher.train.flow import resume as run_resume

    app = app_context(ctx)
    run = find_run_dir(app.ledger, job, runs)
    state = run.load()
    if gpus not in (None, 1) and state.engine == "kraken":
        raise InputError(f"job {job} trains with --engine kraken, on one GPU, not --gpus {gpus}",
                         "leave --gpus out (or give --gpus 1)")
    if gpus is not None:  # resume on another number of GPUs: the checkpoint does not mind
        state.machine["gpus"] = gpus
        run.save(state)
    n = state.machine.get("gpus", 1)
    app = _with_gpus(app, n if isinstance(n, int) and not isinstance(n, bool) else 1, None)
    if max_usd is not None:  # a new cap for the whole job (every attempt so far counts)
        state.max_usd = str(max_usd)
        run.save(state)
        app.ledger.update_job(job, max_usd=max_usd)
    provider = make_provider(app.settings, app.ledger, state.provider, gpu=state.gpu, run_root=run.path,
                             host=state.machine.get("host"),
                             spot=state.market != "on-demand")  # --on-demand stays on demand
    _fit_gpus(provider, app.settings.train.gpus, state.gpu)
    _exit(run_resume(state, run, _deps(app, provider), attach_only=attach_only))


def attach(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    runs: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Folder holding runs/<job> (default ./runs).")] = None,
) -> None:
    """Follow a running job again (after --detach, Ctrl-C or a dropped connection).

    Example:  gpuhire attach train-20261122-1402-a3f9
    """
    _pick_up(ctx, job, runs, attach_only=True)


def resume(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="Job id.")],
    runs: Annotated[Path | None, typer.Option(
        metavar="DIR", help="Folder holding runs/<job> (default ./runs).")] = None,
    max_usd: Annotated[str | None, typer.Option(
        metavar="USD", help="A new cap in USD for the whole job (after it stopped at --max-usd).")] = None,
    gpus: Annotated[int | None, typer.Option(
        metavar="N", help="Resume on this many GPUs (1, 2, 4, 8; default: the job's own).")] = None,
) -> None:
    """Pick up a job whose launcher died: reattach if it runs, else resume from its checkpoint.

    Also continues a job that ran out of --max-restarts, or stopped at its --max-usd cap
    (give a higher --max-usd).

    Example:  gpuhire resume train-20261122-1402-a3f9
    """
    if gpus is not None:
        from launcher.train.gpus import check_gpus

        check_gpus(gpus)
    _pick_up(ctx, job, runs, attach_only=False, max_usd=_decimal(max_usd, "--max-usd"), gpus=gpus)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("logs")(logs)
    app.command("attach")(attach)
    app.command("resume")(resume)
