"""Money as text: exact fixed-point for machines, signed and rounded for people."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from ledger.money import exact, json_default, usd


@pytest.mark.parametrize(("value", "text"), [
    (D("2.8E-8"), "0.000000028"),
    (D("1E-9"), "0.000000001"),
    (D("0E-9"), "0"),
    (D("1E+3"), "1000"),
    (D("100.00"), "100"),
    (D("0.360"), "0.360"),
    (D("-2.71"), "-2.71"),
    (D("49.06666666666666666666666667"), "49.06666666666666666666666667"),
    (D(1) / D(3) / D(10**9), "0.0000000003333333333333333333333333333"),
])
def test_exact_is_fixed_point_with_every_digit(value: D, text: str) -> None:
    assert exact(value) == text
    assert "E" not in text.upper() and D(text) == value


@pytest.mark.parametrize(("value", "places", "text"), [
    (D("-2.705"), 2, "-$2.71"),
    (D("-0.004"), 2, "$0.00"),
    (D("1234.5"), 2, "$1,234.50"),
    (D("-1234.5"), 0, "-$1,235"),
    (D("0.00015"), 4, "$0.0002"),
])
def test_usd_puts_the_sign_first(value: D, places: int, text: str) -> None:
    assert usd(value, places) == text


def test_json_default_writes_decimals_exactly() -> None:
    assert json.dumps({"usd": D("2.8E-8")}, default=json_default) == '{"usd": "0.000000028"}'
