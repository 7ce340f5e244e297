"""Reading rental sessions from CSV: the whole file is checked before anything is written.

Columns (header row; `-` and `_` are the same): provider, gpu, start, usd_per_hour (required);
count, end, instance_type, market, zone, region, volume_gb, end_reason, note, public_ipv4,
on_demand_usd_per_hour (optional: what the machine costs on demand, for the spot savings).
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation

from ledger.book import NewSession
from ledger.errors import InputError
from ledger.timeutil import parse_time

REQUIRED = ("provider", "gpu", "start", "usd_per_hour")
OPTIONAL = (
    "count", "end", "instance_type", "market", "zone", "region", "volume_gb", "end_reason",
    "note", "public_ipv4", "on_demand_usd_per_hour",
)


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{name} {text!r} is not a number", f"write {name} like 0.526") from None
    if not value.is_finite():
        raise InputError(f"{name} {text!r} is not a finite number", "give a plain number")
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


def session_from_fields(fields: dict[str, str]) -> NewSession:
    """A NewSession from text fields (CSV row or flags), checked; raises InputError."""
    get = {k: (v or "").strip() for k, v in fields.items()}
    for name in REQUIRED:
        if not get.get(name):
            raise InputError(f"{name} is missing", f"fill the {name} column")
    end = parse_time(get["end"], "end") if get.get("end") else None
    on_demand = get.get("on_demand_usd_per_hour")
    new = NewSession(
        provider=get["provider"],
        gpu_model=get["gpu"],
        gpu_count=_int(get.get("count") or "1", "count"),
        start_at=parse_time(get["start"], "start"),
        end_at=end,
        usd_per_hour=_decimal(get["usd_per_hour"], "usd_per_hour"),
        instance_type=get.get("instance_type", ""),
        market=get.get("market") or "on-demand",
        zone=get.get("zone", ""),
        region=get.get("region", ""),
        volume_gb=_int(get.get("volume_gb") or "0", "volume_gb"),
        end_reason=(get.get("end_reason") or None) if end else None,
        note=get.get("note", ""),
        public_ipv4=_bool(get.get("public_ipv4", ""), "public_ipv4"),
        state="running",
        on_demand_usd_per_hour=_decimal(on_demand, "on_demand_usd_per_hour") if on_demand else None,
    )
    if get.get("end_reason") and end is None:
        raise InputError("an end_reason was given without an end", "fill the end column")
    new.check()
    return new


def parse_csv(text: str, source: str = "CSV") -> list[NewSession]:
    """Every row as a NewSession, or one InputError naming every bad row and its fix."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InputError(f"{source} is empty", "add a header row: " + ",".join(REQUIRED))
    header = {h: h.strip().lower().replace("-", "_") for h in reader.fieldnames}
    missing = [c for c in REQUIRED if c not in header.values()]
    unknown = [h for h, n in header.items() if n not in REQUIRED + OPTIONAL]
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
    sessions: list[NewSession] = []
    problems: list[str] = []
    for row in reader:
        line = reader.line_num
        fields = {header[k]: v for k, v in row.items() if k is not None}
        if None in row:
            problems.append(f"line {line}: more fields than columns; remove the extra commas")
            continue
        try:
            sessions.append(session_from_fields(fields))
        except InputError as exc:
            problems.append(f"line {line}: {exc}")
    if problems:
        raise InputError(
            f"{source}: {len(problems)} bad row(s), nothing was written: " + " | ".join(problems)
        )
    if not sessions:
        raise InputError(f"{source} has a header but no rows", "add one row per session")
    return sessions
