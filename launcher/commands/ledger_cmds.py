"""`gpuhire ledger add|import|list`, `gpuhire cards`, `gpuhire advise`."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from launcher import completion
from launcher.context import AppContext, app_context
from launcher.output import (
    ListFormat,
    TableFormat,
    iso,
    print_csv,
    print_json,
    print_table,
    usd,
)
from ledger.errors import InputError
from ledger.timeutil import parse_month, parse_time, utcnow

ledger_app = typer.Typer(
    help="Record and list rental sessions.\n\nExample:  gpuhire ledger list --month 2026-10",
    no_args_is_help=True,
)


@ledger_app.command("add")
def add(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option(
        metavar="NAME", autocompletion=completion.known_providers,
        help="Who you rented from: aws, runpod, lambda, ...")],
    gpu: Annotated[str, typer.Option(
        metavar="MODEL", autocompletion=completion.known_gpus,
        help="GPU model: t4, l4, a10g, a100, ...")],
    start: Annotated[str, typer.Option(
        metavar="TIME", help="Start, ISO 8601 (an offset is converted to UTC).")],
    usd_per_hour: Annotated[str, typer.Option(
        metavar="USD", help="Price of the whole machine per hour, USD.")],
    end: Annotated[str | None, typer.Option(
        metavar="TIME", help="End, ISO 8601; omit for a running session.")] = None,
    count: Annotated[int, typer.Option(metavar="N", help="GPUs in the machine.")] = 1,
    instance_type: Annotated[str, typer.Option(metavar="TYPE", help="e.g. g4dn.xlarge")] = "",
    market: Annotated[str, typer.Option(
        metavar="spot|on-demand", autocompletion=completion.markets,
        help="spot or on-demand")] = "on-demand",
    zone: Annotated[str, typer.Option(metavar="ZONE", help="Availability zone, e.g. us-east-1a")] = "",
    volume_gb: Annotated[int, typer.Option(
        metavar="GB", help="Attached disk, GB (billed per GB-month).")] = 0,
    public_ipv4: Annotated[bool, typer.Option(help="Had a public IPv4 address.")] = False,
    end_reason: Annotated[
        str | None, typer.Option(metavar="REASON", autocompletion=completion.end_reasons,
                                 help="completed, user, spot-interruption or unknown")
    ] = None,
    note: Annotated[str, typer.Option(metavar="TEXT", help="Free text.")] = "",
    on_demand_usd_per_hour: Annotated[
        str | None,
        typer.Option(metavar="USD",
                     help="The same machine's on-demand price, USD/h: a spot session's savings."),
    ] = None,
    allow_duplicates: Annotated[
        bool,
        typer.Option("--allow-duplicates",
                     help="Record it even if an identical session is already in the ledger."),
    ] = False,
) -> None:
    """Record a session paid elsewhere or by hand.

    A session identical to a recorded one (same provider, GPU, start, end, price, instance
    type and zone) is refused, as in `ledger import`: adding it twice would double its rent.

    Example:  gpuhire ledger add --provider runpod --gpu a100 --start 2026-10-01T08:00Z
    --end 2026-10-01T11:30Z --usd-per-hour 1.19
    """
    from ledger.errors import DuplicateSessionsError
    from ledger.importer import session_from_fields

    app = app_context(ctx)
    fields = {
        "provider": provider, "gpu": gpu, "start": start, "end": end or "",
        "usd_per_hour": usd_per_hour, "count": str(count), "instance_type": instance_type,
        "market": market, "zone": zone, "volume_gb": str(volume_gb),
        "end_reason": end_reason or "", "note": note, "public_ipv4": str(public_ipv4),
        "on_demand_usd_per_hour": on_demand_usd_per_hour or "",
    }
    new = session_from_fields(fields, flags=True, now=utcnow())
    try:
        [session_id] = app.ledger.record_sessions(
            [(new, app.settings.billing_rules(new.provider))], allow_duplicates=allow_duplicates)
    except DuplicateSessionsError:
        raise InputError(
            "an identical session (same provider, GPU, start, end, price, instance type and "
            "zone) is already in the ledger, nothing was recorded",
            "adding it again would count its rent twice: see `gpuhire ledger list`, or pass "
            "--allow-duplicates if it is another machine",
        ) from None
    view = app.ledger.session_view(session_id)
    state = "running" if view.running else f"{view.cost.billed_s} s billed"
    typer.echo(f"recorded session {session_id}: {state}, {usd(view.cost.total_usd, 4)}")
    _check_alerts(app)


@ledger_app.command("import")
def import_csv(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(
        metavar="FILE.csv", help="CSV with a header row (see docs/ledger.md).")],
    allow_duplicates: Annotated[
        bool,
        typer.Option("--allow-duplicates",
                     help="Record rows identical to sessions already in the ledger."),
    ] = False,
) -> None:
    """Import sessions from CSV: checked whole first; one bad row and nothing is written.

    Rows identical to recorded sessions (same provider, GPU, start, end, price, instance
    type and zone) are refused, so importing a file twice never doubles the rent.

    Example:  gpuhire ledger import runpod-2026.csv
    """
    from ledger.errors import DuplicateSessionsError
    from ledger.importer import parse_csv_rows

    app = app_context(ctx)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}", "check the path") from None
    except UnicodeDecodeError:
        raise InputError(f"{file} is not UTF-8 text", "save it as UTF-8 CSV") from None
    rows = parse_csv_rows(text, source=str(file), now=utcnow())
    settings = app.settings
    items = [(s, settings.billing_rules(s.provider)) for _, s in rows]
    try:
        ids = app.ledger.record_sessions(items, allow_duplicates=allow_duplicates)
    except DuplicateSessionsError as exc:
        raise InputError(
            f"{file}: {len(exc.indexes)} row(s) are already in the ledger (first: line "
            f"{rows[exc.indexes[0]][0]}), nothing was written",
            "importing a file twice would count its rent twice: remove those rows, or pass "
            "--allow-duplicates if they are other sessions",
        ) from None
    typer.echo(f"imported {len(ids)} session(s) from {file} (ids {ids[0]}-{ids[-1]})")
    _check_alerts(app)


def _check_alerts(app: AppContext) -> None:
    """The alert checks after recording: a problem is a warning, the sessions stay recorded."""
    from ledger.alerts.check import check_quietly

    check_quietly(app.ledger, app.settings, warn=lambda m: typer.echo(m, err=True))


@ledger_app.command("list")
def list_sessions(
    ctx: typer.Context,
    month: Annotated[str | None, typer.Option(
        metavar="YYYY-MM", help="Only this month, costed for it.")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table, json or csv")] = TableFormat.table,
) -> None:
    """List sessions with their billed seconds and USD (running ones costed to now).

    Example:  gpuhire ledger list --month 2026-10 --format csv
    """
    from ledger.queries import session_dict

    app = app_context(ctx)
    views = app.ledger.sessions(parse_month(month) if month else None)
    errors = app.ledger.quote_errors()
    rows = [session_dict(v, errors.get(v.session.job_id or "")) for v in views]
    if fmt is TableFormat.json:
        print_json(rows)
        return
    headers = ["id", "provider", "gpu", "market", "start", "end", "reason", "billed_s", "usd", "quote"]
    if fmt is TableFormat.csv:
        print_csv(list(rows[0].keys()) if rows else headers, [list(r.values()) for r in rows])
        return
    table = [
        [r["id"], r["provider"], f"{r['gpu_count']}x {r['gpu_model']}", r["market"],
         iso(r["start"]), iso(r["end"]) or "running", r["end_reason"] or "",
         r["billed_s"], usd(r["total_usd"], 4),
         "" if r["quote_error"] is None else f"{r['quote_error']:+.0%}".replace("%", " %")]
        for r in rows
    ]
    total = sum((v.cost.total_usd for v in views), Decimal(0))
    title = f"{len(rows)} session(s){' in ' + month if month else ''}, {usd(total)}"
    print_table(title, headers, table)


def cards(
    ctx: typer.Context,
    fmt: Annotated[ListFormat, typer.Option("--format", help="table or json")] = ListFormat.table,
) -> None:
    """List the cards you could buy (built-in and your own from the config).

    Example:  gpuhire cards --format json
    """
    from ledger.catalogue import card_dict

    settings = app_context(ctx).settings
    rows = [card_dict(c) for c in settings.all_cards().values()]
    if fmt is ListFormat.json:
        print_json(rows)
        return
    default = settings.ownership.card
    print_table(
        f"Cards (default: {default})",
        ["name", "card", "price", "watts", "speed vs T4", "resale", "life (months)"],
        [[r["name"], r["label"], usd(r["price_usd"], 0), r["power_w"], r["speed_vs_t4"],
          r["resale_fraction"], r["lifetime_months"]] for r in rows],
    )


def advise(
    ctx: typer.Context,
    card: Annotated[str | None, typer.Option(
        metavar="CARD", autocompletion=completion.cards,
        help="Card to compare with (see `gpuhire cards`).")] = None,
    as_of: Annotated[
        str | None, typer.Option(metavar="YYYY-MM-DD",
                                 help="Judge as on this date: the window ends before its month.")
    ] = None,
    usd_per_kwh: Annotated[str | None, typer.Option(metavar="USD", help="Electricity price per kWh.")] = None,
    host_w: Annotated[str | None, typer.Option(
        metavar="WATTS", help="Watts of the rest of the computer.")] = None,
    window_months: Annotated[int | None, typer.Option(metavar="N", help="Complete months to judge.")] = None,
    buy_payback_months: Annotated[str | None, typer.Option(
        metavar="MONTHS", help="Buy at most at this payback.")] = None,
    watch_payback_months: Annotated[str | None, typer.Option(
        metavar="MONTHS", help="Watch up to this payback.")] = None,
    resale_fraction: Annotated[str | None, typer.Option(
        metavar="FRACTION", help="Resale value at end of life, e.g. 0.4.")] = None,
    lifetime_months: Annotated[int | None, typer.Option(
        metavar="MONTHS", help="Months the card is used.")] = None,
    speed: Annotated[
        list[str] | None,
        typer.Option(metavar="GPU=FACTOR",
                     help="A rented GPU's speed vs a T4 (repeatable), e.g. --speed a100=4.5."),
    ] = None,
    fmt: Annotated[str, typer.Option(
        "--format", metavar="text|json", autocompletion=completion.text_formats,
        help="text or json")] = "text",
) -> None:
    """Say whether to rent, watch or buy a card, with the numbers that decided it.

    Example:  gpuhire advise --card rtx3060 --as-of 2026-11-01 --format json
    """
    from launcher.config import load_settings
    from ledger.advice import advice_dict, advice_text, advise_from_ledger

    if fmt not in ("text", "json"):
        raise InputError(f"--format {fmt!r} is unknown", "use --format text or --format json")
    app = app_context(ctx)
    overrides = {
        "usd_per_kwh": usd_per_kwh, "host_w": host_w, "window_months": window_months,
        "buy_payback_months": buy_payback_months, "watch_payback_months": watch_payback_months,
        "resale_fraction": resale_fraction, "lifetime_months": lifetime_months, "card": card,
    }
    own = {k: v for k, v in overrides.items() if v is not None}
    names = {f"ownership.{k}": "--" + k.replace("_", "-") for k in overrides} | {"speeds": "--speed"}
    settings = load_settings(app.config_path, names, db=app.db_url, ownership=own or None,
                             speeds=_speeds(speed or []) or None)
    when: datetime = parse_time(as_of, "--as-of") if as_of else utcnow()
    result = advise_from_ledger(
        app.ledger, settings.card(card), settings.ownership_params(), when
    )
    if fmt == "json":
        print_json(advice_dict(result))
    else:
        typer.echo(advice_text(result))


def _speeds(pairs: list[str]) -> dict[str, str]:
    """`--speed a100=4.5` flags as the [speeds] table (values are checked by the settings)."""
    out: dict[str, str] = {}
    for pair in pairs:
        gpu, sep, factor = pair.partition("=")
        if not sep or not gpu.strip() or not factor.strip():
            raise InputError(f"--speed {pair!r} is not GPU=FACTOR", "write it like --speed a100=4.5")
        out[gpu.strip().lower()] = factor.strip()
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.command("cards")(cards)
    app.command("advise")(advise)
