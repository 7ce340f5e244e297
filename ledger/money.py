"""Money as text: exact for machines (JSON, CSV, webhooks), rounded for people.

Exact means every digit and never an exponent: `str(Decimal("2.8E-8"))` is "2.8E-8", which
many JSON and CSV readers take for a float or a typo; `exact` writes "0.000000028".
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def exact(value: Decimal) -> str:
    """Every digit, fixed-point, no exponent; whole amounts without a fraction ("100")."""
    if value.is_finite() and value == value.to_integral():
        return format(value.normalize(), "f")
    return format(value, "f")


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for Decimals (exact strings) and datetimes (ISO 8601, Z)."""
    if isinstance(value, Decimal):
        return exact(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).replace("+00:00", "Z")
    return str(value)


def usd(value: Decimal, places: int = 2) -> str:
    """USD for people, rounded half up for display only, the sign first: "-$2.71"."""
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,}"
