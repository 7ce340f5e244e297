"""Rendering results: tables (rich), JSON (stable, exact), CSV and money for people."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ledger import money


class TableFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ListFormat(StrEnum):
    table = "table"
    json = "json"


to_json = money.to_json  # the one JSON writer (ledger.money): Decimals exact, see docs/json.md


def print_json(data: Any) -> None:
    sys.stdout.write(to_json(data) + "\n")


def confirm(question: str, yes: bool = False) -> bool:
    """Ask the user a yes/no question (default no); `yes` (from --yes) answers it. Without a
    terminal to ask on, InputError names --yes."""
    if yes:
        return True
    if not sys.stdin.isatty():
        from launcher.errors import InputError

        raise InputError(f"{question} needs an answer", "pass --yes to go ahead without asking")
    import typer

    return typer.confirm(question, default=False)


def usd(value: Decimal | None, places: int = 2) -> str:
    """Money for people: rounded for display only."""
    if value is None:
        return "-"
    return money.usd(value, places)


def number(value: Decimal | float | None, places: int = 1) -> str:
    """A number for people, rounded for display only."""
    if value is None:
        return "-"
    return money.rounded(value, places)


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def print_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, not str: cells are data, never rich markup ("[gpuhire] ..." would vanish).
    table = Table(title=Text(title) if title else None, title_justify="left")
    for h in headers:
        table.add_column(Text(h), overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(c)) for c in row))
    Console(width=table_width()).print(table)


PIPED_WIDTH = 1000  # columns when stdout is not a terminal: a row is one line for grep and awk


def table_width() -> int | None:
    """None (rich measures the terminal, or reads COLUMNS) on a terminal or when COLUMNS is
    set; otherwise wide, because rich's 80-column default for pipes folds every long row."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return PIPED_WIDTH


def print_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([money.json_default(c) if isinstance(c, Decimal | datetime) else c
                         for c in row])
    sys.stdout.write(buf.getvalue())
