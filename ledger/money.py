"""Money and numbers as text: exact for machines (JSON, CSV, webhooks), rounded for people.

Exact means every digit and never an exponent: `str(Decimal("2.8E-8"))` is "2.8E-8", which
many JSON and CSV readers take for a float or a typo; `exact` writes "0.000000028".
Every JSON gpuhire writes (commands, reports, webhooks, stored alert fields) goes through
`json_default`; every rounded amount for people through `usd` and `rounded`.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any


def exact(value: Decimal) -> str:
    """Every digit, fixed-point, no exponent; whole amounts without a fraction ("100")."""
    if value.is_finite() and value == value.to_integral():
        return format(value.normalize(), "f")
    return format(value, "f")


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)`: Decimals as exact strings, enums as their value, datetimes
    as ISO 8601 (UTC as Z); anything else is a TypeError, as json.dumps expects."""
    if isinstance(value, Decimal):
        return exact(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).replace("+00:00", "Z")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_json(data: Any) -> str:
    """The stable JSON of every `--format json` (docs/json.md): indented, UTF-8 as is."""
    return json.dumps(data, default=json_default, indent=2, ensure_ascii=False)


def usd(value: Decimal, places: int = 2) -> str:
    """USD for people, rounded half up for display only, the sign first: "-$2.71"."""
    rounded_value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded_value < 0 else ""
    return f"{sign}${abs(rounded_value):,}"


def rounded(value: Decimal | float, places: int = 1) -> str:
    """A number for people (hours, months), rounded half up, thousands separated: "1,234.5"."""
    return f"{Decimal(str(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP):,}"
