"""`gpuhire train`, `logs`, `attach`, `resume`."""

from __future__ import annotations

import sys
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from launcher.context import AppContext, app_context
from launcher.errors import ConfigError, InputError, SpecError
from launcher.output import usd

if TYPE_CHECKING:
    from launcher.rundir import RunDir
    from launcher.train.flow import Renter, TrainDeps, TrainResult


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


def compile_ground_truth(inputs: list[Path], out: Path) -> int:
    """Compile the ground truth with the trainer's own readers; return the usable line count."""
    from jobs.htr.dataset import CompiledDataset, compile_dataset, is_compiled_dataset
    from jobs.htr.errors import GroundTruthError

    if len(inputs) == 1 and is_compiled_dataset(inputs[0]):  # already compiled
        import shutil

        shutil.copytree(inputs[0], out, dirs_exist_ok=True)
        return len(CompiledDataset(out))
    try:
        report = compile_dataset(inputs, out)
    except GroundTruthError as exc:
        fix = f"{exc.fix}; nothing was rented" if exc.fix else "nothing was rented"
        raise SpecError(f"ground truth unusable: {exc.message}", fix) from None
    summary = getattr(report, "summary", None)
    if callable(summary):
        typer.echo(summary(), err=True)
    return len(CompiledDataset(out))


def checked_preset(preset: str, where: str) -> str:
    """A preset the trainer ships, or the full path of an existing .toml file of the user's
    own, loaded with the trainer's own reader: a bad one stops here, before anything is rented."""
    from jobs.htr.config import PRESETS, PRESETS_DIR, load_config
    from jobs.htr.config import ConfigError as PresetError

    shipped = sorted((p.stem for p in PRESETS_DIR.glob("*.toml")),
                     key=lambda n: (PRESETS.index(n) if n in PRESETS else len(PRESETS), n))
    choices = f"use one of {', '.join(shipped)}, or the path of a .toml file of your own"
    if preset.endswith(".toml"):
        path = Path(preset).expanduser()
        if not path.is_file():
            raise InputError(f"{where}: no file {preset}", choices)
        preset = str(path.resolve())
    elif preset not in shipped:
        raise InputError(f"{where}: {preset!r} is not a trainer preset", choices)
    try:
        load_config(preset)
    except PresetError as exc:
        raise InputError(f"{where}: {exc.message}", exc.fix) from None
    return preset


def make_renter(app: AppContext, provider: str, gpu: str, run_root: Path,
                host: str | None = None, spot: bool = True) -> Renter:
    settings = app.settings
    choice = settings.train.provider if provider == "auto" else provider
    if choice == "auto":  # AWS once `gpuhire init` wrote [aws]; this machine otherwise
        configured = settings.aws.bucket or settings.aws.instance_profile
        choice = "aws" if configured else "local"
    if choice == "aws":
        from launcher.providers.aws.provider import AwsProvider
        from launcher.providers.aws.renter import AwsRenter

        aws = AwsProvider(settings, app.ledger)
        stage = None
        if settings.aws.bucket:
            from launcher.providers.aws.staging import S3Stage

            stage = S3Stage(aws.client("s3"), settings.aws.bucket)
        return AwsRenter(aws, gpu, spot=spot, runtime=settings.train.runtime,
                         image=settings.train.image, python=settings.train.remote_python,
                         stage=stage, ecr_repository_url=settings.aws.ecr_repository_url)
    if choice == "local":
        from launcher.providers.local import LocalRenter

        local_gpu = settings.local.gpu if gpu in ("auto", "") else gpu
        return LocalRenter(app.ledger, run_root, local_gpu, settings.local.watts,
                           settings.ownership.usd_per_kwh, settings.billing_rules("local"))
    if choice == "ssh":
        from launcher.providers.ssh import SshRenter

        only = next(iter(settings.hosts)) if len(settings.hosts) == 1 else None
        name = host or settings.train.host or only
        if name is None or name not in settings.hosts:
            raise ConfigError(
                f"no SSH host {name!r} is configured" if name else "no SSH host chosen",
                "add [hosts.NAME] to the config and pass --host NAME (docs/train.md)",
            )
        return SshRenter(app.ledger, name, settings.hosts[name], settings.ownership.usd_per_kwh,
                         settings.billing_rules("ssh"))
    raise ConfigError(f"provider {choice!r} is unknown", "use --provider local, ssh or aws")


def _deps(app: AppContext, renter: Renter) -> TrainDeps:
    from launcher.commands.alerts_cmds import check_after_recording
    from launcher.train.flow import TrainDeps

    def confirm(question: str) -> bool:
        if not sys.stdin.isatty():
            raise InputError(f"{question} needs an answer", "pass --yes to go ahead without asking")
        return typer.confirm(question, default=False)

    return TrainDeps(
        ledger=app.ledger, renter=renter, say=lambda m: typer.echo(m, err=True), confirm=confirm,
        compile_dataset=compile_ground_truth,
        after_job=lambda job: check_after_recording(app),
        default_lines_per_s=app.settings.train.lines_per_s or None,
    )


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
        f"  model         {result.run_dir / 'model.pt'}",
    ]
    return "\n".join(lines)


def train(
    ctx: typer.Context,
    data: Annotated[list[Path], typer.Argument(
        help="Ground truth: PAGE XML, ALTO, image+.gt.txt folders, or a compiled dataset.")],
    gpu: Annotated[str, typer.Option(help="t4, l4 or auto (local: what the ledger records).")] = "auto",
    provider: Annotated[str, typer.Option(help="aws, local, ssh or auto (aws when configured).")] = "auto",
    host: Annotated[str | None, typer.Option(help="The [hosts.NAME] for --provider ssh.")] = None,
    spot: Annotated[bool, typer.Option("--spot/--on-demand", help="Spot (cheaper) or on-demand.")] = True,
    max_usd: Annotated[str | None, typer.Option(
        help="Hard cap in USD: refuse a dearer quote, stop a job that passes it.")] = None,
    max_restarts: Annotated[int | None, typer.Option(help="Relaunches after spot interruptions.")] = None,
    preset: Annotated[str | None, typer.Option(
        help="Trainer preset: tiny, small, default, large, or a .toml file of your own.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (default from config: 50).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<job>).")] = None,
    detach: Annotated[bool, typer.Option(
        help="Start the job and return; `gpuhire attach JOB` follows it.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before renting.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and quote; rent nothing.")] = False,
) -> None:
    """Train an HTR model: check the ground truth, quote, rent, follow, bring the model home.

    Example:  gpuhire train gt/ --provider local --preset small --epochs 20 --yes
    """
    from launcher.rundir import new_job_id
    from launcher.train.flow import TrainOptions
    from launcher.train.flow import train as run_train

    app = app_context(ctx)
    settings = app.settings
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs {epochs} trains nothing", "give --epochs 1 or more")
    if max_restarts is not None and max_restarts < 0:
        raise InputError(f"--max-restarts {max_restarts} is below 0",
                         "give --max-restarts 0 (never relaunch) or more")
    where = "--preset" if preset else f"[train] preset in {app.config_path or 'the config file'}"
    checked = checked_preset(preset or settings.train.preset, where)
    cap = _decimal(max_usd, "--max-usd")
    job = new_job_id()
    run_root = out or Path.cwd() / "runs" / job
    renter = make_renter(app, provider, gpu, run_root, host, spot)
    opts = TrainOptions(
        data=tuple(data), preset=checked,
        epochs=settings.train.epochs if epochs is None else epochs, max_usd=cap,
        max_restarts=settings.train.max_restarts if max_restarts is None else max_restarts,
        yes=yes, dry_run=dry_run, detach=detach, out=run_root, job=job,
    )
    result = run_train(opts, _deps(app, renter))
    typer.echo(summary(result))
    if result.status == "failed":
        raise typer.Exit(1)


def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing as the log grows, until the job ends.")] = False,
    runs: Annotated[Path | None, typer.Option(help="Folder holding runs/<job> (default ./runs).")] = None,
) -> None:
    """Print a job's trainer log (from its run directory).

    Example:  gpuhire logs train-20261122-1402-a3f9 -f
    """
    from launcher.rundir import RunDir

    run = RunDir.find(job, runs, _known_run_dir(app_context(ctx), job))
    path = _log_path(run)
    if path is None:
        raise InputError(f"job {job} has no log yet", "wait for it to start, then try again")
    offset = 0
    while True:
        ended = follow and _job_ended(run)  # judged before the last read: nothing is missed
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
        offset += len(chunk)
        sys.stdout.write(chunk.decode("utf-8", "replace"))
        sys.stdout.flush()
        if not follow or ended:
            if offset == 0:  # silence would look like a broken command
                typer.echo(_empty_log_note(run, path), err=True)
            return
        newer = _log_path(run)
        if newer is not None and newer != path and newer.name != "train.log":
            path, offset = newer, 0  # a relaunch writes its own log
        time.sleep(1)


def _log_path(run: RunDir) -> Path | None:
    """The log to print: the settled copy, else the newest attempt's log on this machine."""
    candidates = [run.log, *sorted((run.path / "box").glob("train-*.log"), reverse=True)]
    return next((p for p in candidates if p.exists()), None)


def _empty_log_note(run: RunDir, path: Path) -> str:
    """What to say when the trainer's log is empty: where the job's events are instead."""
    from launcher.train.events import EventReader

    events = EventReader().feed(run.events.read_bytes()) if run.events.exists() else []
    if not events:
        return f"note: {path} is empty and the job has sent no events yet ({run.events})"
    last = events[-1]
    return (f"note: {path} is empty; the job's {len(events)} event(s) are in {run.events} "
            f"(the last: {last.get('event', '?')} at {last.get('time', '?')})")


def _job_ended(run: RunDir) -> bool:
    """Settled by its launcher, or (local) its process gone with no launcher to settle it."""
    from launcher.providers.hosts import LocalHost

    state = run.load()
    if state.status in ("done", "failed", "stopped"):
        return True
    box = run.path / "box"
    return state.provider == "local" and state.status == "running" and box.is_dir() \
        and not LocalHost(box).running("train.pid")


def _known_run_dir(app: AppContext, job: str) -> Path | None:
    """Where the ledger says the job's run directory is (any folder it was started from)."""
    from ledger.errors import NotFoundError

    try:
        spec = app.ledger.get_job(job).spec
    except NotFoundError:
        return None
    return Path(spec["run_dir"]) if spec.get("run_dir") else None


def _pick_up(ctx: typer.Context, job: str, runs: Path | None, attach_only: bool,
             max_usd: Decimal | None = None) -> None:
    from launcher.rundir import RunDir
    from launcher.train.flow import resume as run_resume

    app = app_context(ctx)
    run = RunDir.find(job, runs, _known_run_dir(app, job))
    state = run.load()
    if max_usd is not None:  # a new cap for the whole job (every attempt so far counts)
        state.max_usd = str(max_usd)
        run.save(state)
        app.ledger.update_job(job, max_usd=max_usd)
    renter = make_renter(app, state.provider, state.gpu, run.path, state.machine.get("host"),
                         spot=state.market != "on-demand")  # --on-demand stays on demand
    result = run_resume(state, run, _deps(app, renter), attach_only=attach_only)
    typer.echo(summary(result))
    if result.status == "failed":
        raise typer.Exit(1)


def attach(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    runs: Annotated[Path | None, typer.Option(help="Folder holding runs/<job> (default ./runs).")] = None,
) -> None:
    """Follow a running job again (after --detach, Ctrl-C or a dropped connection).

    Example:  gpuhire attach train-20261122-1402-a3f9
    """
    _pick_up(ctx, job, runs, attach_only=True)


def resume(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Job id.")],
    runs: Annotated[Path | None, typer.Option(help="Folder holding runs/<job> (default ./runs).")] = None,
    max_usd: Annotated[str | None, typer.Option(
        help="A new cap in USD for the whole job (after it stopped at --max-usd).")] = None,
) -> None:
    """Pick up a job whose launcher died: reattach if it runs, else resume from its checkpoint.

    Also continues a job that ran out of --max-restarts, or stopped at its --max-usd cap
    (give a higher --max-usd).

    Example:  gpuhire resume train-20261122-1402-a3f9
    """
    _pick_up(ctx, job, runs, attach_only=False, max_usd=_decimal(max_usd, "--max-usd"))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("logs")(logs)
    app.command("attach")(attach)
    app.command("resume")(resume)
