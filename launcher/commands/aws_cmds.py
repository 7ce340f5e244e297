"""`gpuhire offers`, `status`, `stop`, `gc`: what runs (every provider) and the AWS side."""

from __future__ import annotations

import sys
from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launcher.context import AppContext, app_context
from launcher.errors import GpuhireError, InputError, NotFoundError
from launcher.output import ListFormat, iso, print_json, print_table, usd

if TYPE_CHECKING:
    from launcher.providers.aws.provider import AwsProvider
    from launcher.providers.base import Offer


def make_provider(app: AppContext, region: str | None = None) -> AwsProvider:
    """The AWS provider on the user's settings (optionally another region)."""
    from launcher.providers.aws.provider import AwsProvider

    settings = app.settings
    if region:
        settings = settings.model_copy(update={"aws": settings.aws.model_copy(update={"region": region})})
    return AwsProvider(settings, app.ledger)


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InputError(f"{question} needs an answer", "pass --yes to go ahead without asking")
    return typer.confirm(question, default=False)


def _offer_row(o: Offer) -> dict[str, Any]:
    return {
        "gpu": o.gpu, "instance_type": o.instance_type, "region": o.region, "zone": o.zone,
        "vcpus": o.vcpus, "memory_gib": o.memory_gib, "market": o.market,
        "usd_per_hour": o.usd_per_hour, "on_demand_usd_per_hour": o.on_demand_usd_per_hour,
        "saving_fraction": (1 - o.usd_per_hour / o.on_demand_usd_per_hour).quantize(Decimal("0.01"))
        if o.on_demand_usd_per_hour else None,
        "price_at": o.price_at, "source": o.source,
    }


def offers(
    ctx: typer.Context,
    gpu: Annotated[str | None, typer.Option("--gpu", help="t4 or l4 (default: both)")] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: [aws] region)")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """Show where a T4 or L4 can be rented now: live spot prices per zone, cheapest first.

    Example:  gpuhire offers --gpu t4 --region us-east-1
    """
    gpus = [gpu.lower()] if gpu else ["t4", "l4"]
    for g in gpus:
        if g not in ("t4", "l4"):
            raise InputError(f"--gpu {gpu!r} is not offered", "use --gpu t4 or --gpu l4")
    provider = make_provider(app_context(ctx), region)
    found = [o for g in gpus for o in provider.offers(g)]
    rows = [_offer_row(o) for o in found]
    if fmt == ListFormat.json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no spot offers found (see docs/aws.md)", err=True)
        return
    print_table(
        f"Spot offers in {provider.aws.region}",
        ["GPU", "type", "zone", "vCPUs", "spot $/h", "on-demand $/h", "saving", "since"],
        [[r["gpu"].upper(), r["instance_type"], r["zone"], r["vcpus"], usd(r["usd_per_hour"], 4),
          usd(r["on_demand_usd_per_hour"], 3),
          f"{r['saving_fraction']:.0%}" if r["saving_fraction"] is not None else "-",
          iso(r["price_at"])] for r in rows],
    )


def _aws_if_any(app: AppContext, region: str | None) -> tuple[AwsProvider | None, str | None]:
    """The AWS provider when [aws] is configured or AWS credentials exist, else None; with a
    one-line note when AWS was expected (configured, or the ledger has AWS jobs) but cannot
    be asked."""
    from launcher.errors import GpuhireError
    from launcher.providers.aws.client import make_session

    aws = app.settings.aws
    expected = bool(region or aws.profile or aws.bucket or aws.instance_profile) or any(
        v.session.provider == "aws" for v in app.ledger.sessions(open_only=True))
    try:
        found = make_session(aws).get_credentials() is not None
        why = "no AWS credentials found (aws configure, or aws sso login)"
    except GpuhireError as exc:
        found, why = False, exc.message
    except Exception as exc:  # a broken AWS config file: say it, list the rest
        found, why = False, f"AWS credentials unreadable ({exc})"
    if found:
        return make_provider(app, region), None
    return None, (f"note: AWS not asked: {why}" if expected else None)


def status(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: [aws] region)")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """List running jobs of every provider (local, ssh, AWS by tag) with their cost so far.

    AWS is asked only when it is configured or credentials exist; when it cannot be reached,
    one line says so and its jobs are listed from the ledger.

    Example:  gpuhire status --format json
    """
    from launcher.status import running_jobs

    app = app_context(ctx)
    aws, note = _aws_if_any(app, region)
    rows, unreachable = running_jobs(app.ledger, aws)
    for line in (note, unreachable and f"note: {unreachable}"):
        if line:
            typer.echo(line, err=True)
    if fmt == ListFormat.json:
        print_json([asdict(r) for r in rows])
        return
    if not rows:
        typer.echo("nothing running")
        return
    print_table(
        "gpuhire jobs running",
        ["job", "provider", "machine", "type", "zone/host", "market", "state", "since", "$/h", "so far"],
        [[r.job or "?", r.provider, r.instance_id or "-", r.instance_type or r.gpu, r.zone or "-",
          r.market, r.state, iso(r.launched_at), usd(r.usd_per_hour, 4),
          usd(r.usd_so_far, 4) if r.usd_so_far is not None else "not in ledger: gpuhire gc"]
         for r in rows],
    )


def stop(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument(help="the job to stop")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="stop every running gpuhire job")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask (with --all)")] = False,
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: [aws] region)")] = None,
) -> None:
    """Stop a job now: terminate its AWS instances, or signal its local/ssh process; close its
    ledger sessions (reason: user). Local and ssh jobs need no AWS.

    Example:  gpuhire stop train-20261122-1402-a3f9
    """
    from launcher.status import running_jobs

    if (job is None) == (not all_jobs):
        raise InputError("give a JOB or --all (not both)", "e.g. gpuhire stop JOB, or gpuhire stop --all")
    app = app_context(ctx)
    if all_jobs:
        aws, note = _aws_if_any(app, region)
        if note:
            typer.echo(note, err=True)
        rows, _ = running_jobs(app.ledger, aws)
        jobs = sorted({r.job for r in rows if r.job})
        if not jobs:
            typer.echo("nothing to stop")
            return
        if not _confirm(f"stop {len(jobs)} job(s): {', '.join(jobs)}?", yes):
            raise typer.Exit(1)
    else:
        jobs = [str(job)]
    where = {j: _provider_of(app, j) for j in jobs}
    # A JOB named by hand and known nowhere here: say so, asking AWS only where it is set up.
    unknown = {j for j, p in where.items() if p is None and not all_jobs}
    if unknown and not _aws_configured(app, region):
        raise NotFoundError(f"no job {sorted(unknown)[0]} in the ledger or under ./runs",
                            "check the id: `gpuhire status` lists the running jobs")
    on_aws = [j for j in jobs if (where[j] or "aws") == "aws"]  # AWS tags may know it
    for name in jobs:  # no AWS needed for these
        if name not in on_aws:
            _stop_owned(app, name)
    provider = make_provider(app, region) if on_aws else None
    for name in on_aws:
        assert provider is not None
        gone = provider.release(name, "user")
        if name in unknown and not gone:
            raise NotFoundError(f"no job {name} in the ledger, under ./runs or running on AWS",
                                "check the id: `gpuhire status` lists the running jobs")
        _mark_stopped(app, name)
        typer.echo(f"{name}: {len(gone)} instance(s) terminated" if gone else f"{name}: nothing running")
        if provider.cleanup_problems:
            typer.echo(f"note: {name}: {'; '.join(provider.cleanup_problems)} "
                       "(still in use while the instance shuts down: run `gpuhire gc` in a minute)", err=True)


def _aws_configured(app: AppContext, region: str | None) -> bool:
    """Whether AWS is set up (`gpuhire init`, a profile) or asked for (--region)."""
    aws = app.settings.aws
    return bool(region or aws.profile or aws.bucket or aws.instance_profile)


def _provider_of(app: AppContext, job: str) -> str | None:
    """Where `job` runs by the ledger, else by its run folder; None when neither knows it."""
    from launcher.status import job_provider, run_dir_of

    provider = job_provider(app.ledger, job)
    run = None if provider else run_dir_of(app.ledger, job)
    if run is not None:
        try:
            provider = run.load().provider
        except GpuhireError:
            return None
    return provider


def _stop_owned(app: AppContext, job: str) -> None:
    from launcher.status import stop_owned_job

    typer.echo(stop_owned_job(app.ledger, app.settings, job))


def _mark_stopped(app: AppContext, job: str) -> None:
    from launcher.status import mark_stopped, run_dir_of

    mark_stopped(app.ledger, job, run_dir_of(app.ledger, job))


def gc(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would go")] = False,
    all_owners: Annotated[bool, typer.Option(
        "--all-owners", help="also what other IAM identities launched (shared ledger only)")] = False,
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: [aws] region)")] = None,
) -> None:
    """Find instances, key pairs, security groups and sessions no live job owns; remove them.

    Example:  gpuhire gc --yes
    """
    from launcher.providers.aws import gc as aws_gc

    provider = make_provider(app_context(ctx), region)
    found = aws_gc.plan(provider, all_owners=all_owners)
    if not found.leftovers:
        closed = provider.close_sessions()
        typer.echo("nothing to collect" + (f"; closed {len(closed)} session(s)" if closed else ""))
        return
    print_table("Leftovers", ["kind", "id", "job", "detail"],
                [[x.kind, x.ident, x.job_id or "?", x.detail] for x in found.leftovers])
    if dry_run or not _confirm(f"remove these {len(found.leftovers)} leftover(s)?", yes):
        return
    problems = aws_gc.collect(provider, found)
    for line in problems:
        typer.echo(f"warning: {line}", err=True)
    typer.echo(f"removed {len(found.leftovers) - len(problems)} leftover(s)"
               + ("; run `gpuhire gc` again shortly for the rest" if problems else ""))


def register(app: typer.Typer) -> None:
    app.command("offers")(offers)
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("gc")(gc)
