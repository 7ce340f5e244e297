"""Reading rental sessions from CSV: the whole file is checked before anything is written.

Columns (header row; `-` and `_` are the same): provider, gpu, start, usd_per_hour (required);
end (the column is required; an empty cell marks a session still running); count,
instance_type, market, zone, region, volume_gb, end_reason, note, public_ipv4,
on_demand_usd_per_hour (optional: what the machine costs on demand, for the spot savings).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from ledger.costs import MARKETS
from ledger.errors import InputError
from ledger.models import NANO
from ledger.recording import MAX_USD_PER_HOUR, SPOT_INTERRUPTION, NewSession
from ledger.timeutil import parse_time

REQUIRED = ("provider", "gpu", "start", "usd_per_hour")
OPTIONAL = (
    "count", "end", "instance_type", "market", "zone", "region", "volume_gb", "end_reason",
    "note", "public_ipv4", "on_demand_usd_per_hour",
)
_EXAMPLES = {"provider": "runpod", "gpu": "a100", "start": "2026-10-01T08:00Z",
             "usd_per_hour": "1.19"}
CLOCK_SKEW = timedelta(minutes=1)  # a start this far ahead of our clock is still "now"


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{name} {text!r} is not a number", f"write {name} like 0.526") from None
    if not value.is_finite():
        raise InputError(f"{name} {text!r} is not a finite number", "give a plain number")
    return value


def _usd(text: str, name: str) -> Decimal:
    """A price as written: finer than the nano-dollar the ledger stores is refused, not
    silently rounded (0.0000000001 would be stored as 0)."""
    value = _decimal(text, name)
    if value > MAX_USD_PER_HOUR:
        raise InputError(f"{name} {text!r} is above {MAX_USD_PER_HOUR} USD/h",
                         "give the whole machine's price per hour in USD")
    nano = value * NANO
    if nano != nano.to_integral_value():
        raise InputError(f"{name} {text!r} is finer than the ledger keeps (1e-9 USD)",
                         "round it to at most 9 decimal places")
    return value


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name} {text!r} is not a whole number", f"write {name} like 1") from None


def _bool(text: str, name: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "y"):
        return True
    if low in ("0", "false", "no", "n", ""):
        return False
    raise InputError(f"{name} {text!r} is not yes/no", "write true or false")


def session_from_fields(
    fields: dict[str, str], *, flags: bool = False, now: datetime | None = None
) -> NewSession:
    """A NewSession from text fields (CSV row or flags), checked; raises InputError.

    `flags`: the fields came from `ledger add`, so errors name --flags, not columns. `now`:
    a start after it (plus a minute of clock skew) is refused: that session has not begun."""
    get = {k: (v or "").strip() for k, v in fields.items()}

    def name(key: str) -> str:
        return "--" + key.replace("_", "-") if flags else key

    for key in REQUIRED:
        if not get.get(key):
            fix = f"give {name(key)}, e.g. {_EXAMPLES[key]}" if flags else f"fill the {key} column"
            raise InputError(f"{name(key)} is {'empty' if flags else 'missing'}", fix)
    end = parse_time(get["end"], name("end")) if get.get("end") else None
    start = parse_time(get["start"], name("start"))
    if now is not None and start > now + CLOCK_SKEW:
        raise InputError(
            f"{name('start')} {start.isoformat().replace('+00:00', 'Z')} is in the future",
            "record a session once it has started (a time without an offset is UTC)",
        )
    on_demand = get.get("on_demand_usd_per_hour")
    new = NewSession(
        provider=get["provider"],
        gpu_model=get["gpu"],
        gpu_count=_int(get.get("count") or "1", name("count")),
        start_at=start,
        end_at=end,
        usd_per_hour=_usd(get["usd_per_hour"], name("usd_per_hour")),
        instance_type=get.get("instance_type", ""),
        market=get.get("market") or "on-demand",
        zone=get.get("zone", ""),
        region=get.get("region", ""),
        volume_gb=_int(get.get("volume_gb") or "0", name("volume_gb")),
        end_reason=(get.get("end_reason") or None) if end else None,
        note=get.get("note", ""),
        public_ipv4=_bool(get.get("public_ipv4", ""), name("public_ipv4")),
        state="running",
        on_demand_usd_per_hour=(
            _usd(on_demand, name("on_demand_usd_per_hour")) if on_demand else None
        ),
    )
    if get.get("end_reason") and end is None:
        raise InputError(f"an {name('end_reason')} was given without an end",
                         "add --end" if flags else "fill the end column")
    if new.end_reason == SPOT_INTERRUPTION and new.market in MARKETS and new.market != "spot":
        raise InputError(
            f"{name('end_reason')} {SPOT_INTERRUPTION} is for spot sessions, and this one is "
            f"{new.market}",
            ("add --market spot, or give another --end-reason" if flags else
             "set market to spot, or give another end_reason") + " (completed, user or unknown)",
        )
    new.check()
    return new


def parse_csv_rows(
    text: str, source: str = "CSV", now: datetime | None = None
) -> list[tuple[int, NewSession]]:
    """Every row as (line number, NewSession), or one InputError naming every bad row.

    The file must have an `end` column (an empty cell there marks a session still running):
    without one, every row would silently become a running session costed up to now. Quoting
    is strict: a quoted cell never closed, or text after a closing quote, names its line."""
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise _quoting_error(source, 1, exc) from None
    if not fieldnames:
        raise InputError(f"{source} is empty", "add a header row: " + ",".join(REQUIRED))
    _check_header(list(fieldnames), source)
    header = {h: h.strip().lower().replace("-", "_") for h in fieldnames}
    sessions: list[tuple[int, NewSession]] = []
    problems: list[str] = []
    rows = iter(reader)
    while True:
        first_line = reader.reader.line_num + 1  # where the next record starts
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise _quoting_error(source, first_line, exc) from None
        line = reader.line_num
        fields = {header[k]: v for k, v in row.items() if k is not None}
        if None in row:
            problems.append(f"line {line}: more fields than columns; remove the extra commas")
            continue
        try:
            sessions.append((line, session_from_fields(fields, now=now)))
        except InputError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise InputError(
            f"{source}: {len(problems)} bad row(s), nothing was written: " + " | ".join(problems)
        )
    if not sessions:
        raise InputError(f"{source} has a header but no rows", "add one row per session")
    if "end" not in header.values():
        raise InputError(
            f"{source} has no end column, so all {len(sessions)} row(s) would be recorded as "
            "sessions still running, costed up to now; nothing was written",
            "add an end column with each session's end (an empty cell marks one still running)",
        )
    return sessions


def _quoting_error(source: str, line: int, exc: csv.Error) -> InputError:
    """Malformed CSV quoting, named by the line its record starts on."""
    return InputError(
        f"{source}: line {line}: malformed CSV quoting ({exc}), nothing was written",
        'close every quoted cell, and write a " inside a quoted cell as ""',
    )


def _check_header(names: list[str], source: str) -> None:
    """Every required column once, none unknown, none twice (a second `provider` column
    would silently win over the first)."""
    seen: dict[str, str] = {}
    for raw in names:
        norm = raw.strip().lower().replace("-", "_")
        if norm in seen:
            twice = repr(norm) if seen[norm] == raw else f"{norm!r} (as {seen[norm]!r} and {raw!r})"
            raise InputError(f"{source}: column {twice} appears twice in the header",
                             "keep one of them")
        seen[norm] = raw
    missing = [c for c in REQUIRED if c not in seen]
    unknown = [raw for norm, raw in seen.items() if norm not in REQUIRED + OPTIONAL]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise InputError(
            f"{source}: {'; '.join(parts)}",
            "columns are " + ", ".join(REQUIRED + OPTIONAL),
        )
