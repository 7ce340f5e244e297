"""`gpuhire offers`, `status`, `stop`, `gc`: what runs (every provider) and the AWS side."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from launcher import completion
from launcher.context import app_context
from launcher.errors import InputError
from launcher.output import ListFormat, confirm, iso, print_json, print_table, usd
from ledger.catalogue import RENTED_GPUS

if TYPE_CHECKING:
    from launcher.providers.aws.types import Offer


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
    gpu: Annotated[str | None, typer.Option(
        "--gpu", metavar="t4|l4", autocompletion=completion.rented_gpus,
        help="t4 or l4 (default: both)")] = None,
    region: Annotated[str | None, typer.Option(
        "--region", metavar="REGION", help="AWS region (default: [aws] region)")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """Show where a T4 or L4 can be rented now: live spot prices per zone, cheapest first.

    Example:  gpuhire offers --gpu t4 --region us-east-1
    """
    from launcher.providers.factory import aws_cloud

    gpus = [gpu.lower()] if gpu else list(RENTED_GPUS)
    for g in gpus:
        if g not in RENTED_GPUS:
            raise InputError(f"--gpu {gpu!r} is not offered", "use --gpu t4 or --gpu l4")
    app = app_context(ctx)
    provider = aws_cloud(app.settings, app.ledger, region)
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


def status(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option(
        "--region", metavar="REGION", help="AWS region (default: [aws] region)")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """List running jobs of every provider (local, ssh, AWS by tag) with their cost so far.

    AWS is asked only when it is configured or credentials exist; when it cannot be reached,
    one line says so and its jobs are listed from the ledger. Open sessions of no job (a
    `ledger add` or `ledger import` without an end) are listed too, job "-": they are costed
    up to now.

    Example:  gpuhire status --format json
    """
    from launcher.status import aws_if_any, running_jobs

    app = app_context(ctx)
    aws, note = aws_if_any(app.settings, app.ledger, region)
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
        [[r.job or ("-" if r.session_id is not None else "?"), r.provider, r.instance_id or "-",
          r.instance_type or r.gpu, r.zone or "-",
          r.market, r.state, iso(r.launched_at), usd(r.usd_per_hour, 4),
          usd(r.usd_so_far, 4) if r.usd_so_far is not None else "not in ledger: gpuhire gc"]
         for r in rows],
    )


def stop(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument(metavar="JOB", help="the job to stop")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="stop every running gpuhire job")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask (with --all)")] = False,
    region: Annotated[str | None, typer.Option(
        "--region", metavar="REGION", help="AWS region (default: [aws] region)")] = None,
) -> None:
    """Stop a job now: terminate its AWS instances, or signal its local/ssh process; close its
    ledger sessions (reason: user). Local and ssh jobs need no AWS.

    Example:  gpuhire stop train-20261122-1402-a3f9
    """
    from launcher.status import aws_if_any, running_jobs, stop_jobs

    if (job is None) == (not all_jobs):
        raise InputError("give a JOB or --all (not both)", "e.g. gpuhire stop JOB, or gpuhire stop --all")
    app = app_context(ctx)
    if all_jobs:
        aws, note = aws_if_any(app.settings, app.ledger, region)
        if note:
            typer.echo(note, err=True)
        rows, _ = running_jobs(app.ledger, aws)
        jobs = sorted({r.job for r in rows if r.job})
        if not jobs:
            typer.echo("nothing to stop")
            return
        if not confirm(f"stop {len(jobs)} job(s): {', '.join(jobs)}?", yes):
            raise typer.Exit(1)
    else:
        jobs = [str(job)]
    for line, note in stop_jobs(app.settings, app.ledger, jobs, named=not all_jobs, region=region):
        typer.echo(line)
        if note:
            typer.echo(note, err=True)


def gc(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would go")] = False,
    all_owners: Annotated[bool, typer.Option(
        "--all-owners", help="also what other IAM identities launched (shared ledger only)")] = False,
    region: Annotated[str | None, typer.Option(
        "--region", metavar="REGION", help="AWS region (default: [aws] region)")] = None,
) -> None:
    """Find instances, key pairs, security groups and sessions no live job owns, and the SQS
    queues and staged pages of inference fleets whose launcher died; remove them.

    Example:  gpuhire gc --yes
    """
    from launcher.providers.aws import gc as aws_gc
    from launcher.providers.factory import aws_cloud

    app = app_context(ctx)
    provider = aws_cloud(app.settings, app.ledger, region)
    found = aws_gc.plan(provider, all_owners=all_owners)
    if not found.leftovers:
        closed = provider.close_sessions()
        typer.echo("nothing to collect" + (f"; closed {len(closed)} session(s)" if closed else ""))
        return
    print_table("Leftovers", ["kind", "id", "job", "detail"],
                [[x.kind, x.ident, x.job_id or "?", x.detail] for x in found.leftovers])
    if dry_run or not confirm(f"remove these {len(found.leftovers)} leftover(s)?", yes):
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
