"""What the pages would have cost at the commercial service (ledger/compare.py, `[compare]`).

The issue's example, worked out by hand: 3,000 pages for $4.10 here; at Transkribus's print model
M1, USD 54.25 per 1,000 pages = $0.05425 a page: 3,000 x 0.05425 = $162.75 exactly. Per 1,000
pages here: 4.10 / 3 = 1.3666... -> 1.366666667 (half up to nano-USD), shown as $1.37.
In euros (1,000 credits for EUR 199, one a page): 3,000 x 0.199 = EUR 597; at 1.08 USD/EUR
0.199 x 1.08 = $0.21492 a page, 3,000 x 0.21492 = $644.76.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from launcher.config import load_settings
from ledger.compare import CompareSettings, commercial_comparison
from ledger.errors import ConfigError
from ledger.money import to_json
from tests.cli.test_bad_input import one_line
from tests.conftest import Cli

EUR = CompareSettings(price_per_page=D("0.199"), currency="EUR", usd_per_unit=D("1.08"),
                      source="Transkribus price list: 1,000 credits for EUR 199", as_of="2025")


def test_the_issue_example_exact() -> None:
    c = commercial_comparison(3000, D("4.10"), CompareSettings())
    assert c is not None
    assert c.line == ("these 3,000 pages cost $4.10 here; "
                      "at the commercial price of $0.05425/page: $162.75")
    assert c.commercial_usd == D("162.75") and c.commercial_usd_per_1000_pages == D("54.25")
    assert c.usd_per_1000_pages == D("1.366666667")  # rounded half up to nano-USD
    assert c.savings_usd == D("158.65")
    assert c.per_1000_line.startswith("per 1,000 pages: $1.37 here, $54.25 at Transkribus (arXiv 2504.00414")
    assert c.per_1000_line.endswith(", 2025)")


def test_json_keeps_every_digit() -> None:
    c = commercial_comparison(3000, D("4.10"), CompareSettings())
    assert c is not None
    data = json.loads(to_json(c.as_json()))
    assert data["pages"] == 3000 and data["usd"] == "4.1"
    assert data["usd_per_1000_pages"] == "1.366666667"
    assert data["savings_usd"] == "158.65"
    assert data["commercial"] == {
        "service": "Transkribus", "price_per_page": "0.05425", "currency": "USD", "usd_per_unit": None,
        "usd_per_page": "0.05425", "usd_per_1000_pages": "54.25", "usd": "162.75", "price": "162.75",
        "source": "arXiv 2504.00414, Table 1: print model M1, USD 54.25 per 1,000 pages",
        "as_of": "2025"}
    assert data["line"] == c.line


@pytest.mark.parametrize(("price", "shown"), [
    ("0.05425", "$0.05425/page"),  # never rounded to a different price ($0.054)
    ("0.1", "$0.10/page"), ("2", "$2.00/page"), ("0.050000", "$0.05/page"), ("5E-5", "$0.00005/page"),
])
def test_the_price_shows_every_digit_it_has(price: str, shown: str) -> None:
    c = commercial_comparison(10, D(1), CompareSettings(price_per_page=D(price)))
    assert c is not None and f"at the commercial price of {shown}: " in c.line


def test_small_and_single() -> None:
    c = commercial_comparison(1, D("0.0041666"), CompareSettings())
    assert c is not None
    # one page; a cost below a cent keeps two significant digits, never "$0.00"
    assert c.line == "this page cost $0.0042 here; at the commercial price of $0.05425/page: $0.05"
    free = commercial_comparison(2, D(0), CompareSettings())
    assert free is not None and free.line.startswith("these 2 pages cost $0.00 here")
    assert free.usd_per_1000_pages == 0


@pytest.mark.parametrize("pages", [0, -1])
def test_no_pages_no_line(pages: int) -> None:
    assert commercial_comparison(pages, D("4.10"), CompareSettings()) is None  # no division by zero


def test_another_currency_is_converted_never_mixed() -> None:
    c = commercial_comparison(3000, D("4.10"), EUR)
    assert c is not None
    assert c.line == ("these 3,000 pages cost $4.10 here; at the commercial price of EUR 0.199/page "
                      "(at 1.08 USD/EUR: $0.21492/page): $644.76")
    assert (c.commercial_price, c.commercial_usd) == (D("597"), D("644.76"))
    assert c.commercial_usd_per_1000_pages == D("214.92")
    j = c.as_json()["commercial"]
    assert (j["currency"], j["usd_per_unit"], j["price"], j["usd"]) == ("EUR", D("1.08"), D("597"), D("644.76"))


def test_defaults_from_config() -> None:
    s = load_settings().compare  # no file, no GPUHIRE_*: the documented default
    assert s == CompareSettings()
    assert (s.price_per_page, s.currency, s.usd_per_unit) == (D("0.05425"), "USD", None)
    assert "2504.00414" in s.source and s.as_of == "2025"


def test_override_by_file_then_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[compare]\nprice_per_page = "0.199"\ncurrency = "eur"\nusd_per_unit = "1.08"\n'
                      'source = "Transkribus price list"\nas_of = "2025-06"\n')
    s = load_settings(config).compare
    assert (s.price_per_page, s.currency, s.usd_per_unit, s.as_of) == (D("0.199"), "EUR", D("1.08"), "2025-06")
    monkeypatch.setenv("GPUHIRE_COMPARE__PRICE_PER_PAGE", "0.597")  # a variable beats the file
    c = commercial_comparison(1000, D(1), load_settings(config).compare)  # table workflow: 3 credits
    assert c is not None and c.commercial_usd == D("644.76")  # 1,000 x 0.597 x 1.08
    # each source is checked alone: currency and its rate go in the same place
    monkeypatch.setenv("GPUHIRE_COMPARE", '{"currency": "GBP", "usd_per_unit": "1.27"}')
    assert load_settings(config).compare.currency == "GBP"


@pytest.mark.parametrize(("toml", "line"), [
    ('price_per_page = "0.199"\ncurrency = "EUR"',
     "config key 'compare.usd_per_unit' in {f}: the price is in EUR; set usd_per_unit to the USD one "
     "EUR buys (e.g. \"1.08\") so it can be compared with the USD spent here; fix its value (docs/config.md)"),
    ('usd_per_unit = "1.1"',
     "config key 'compare.usd_per_unit' in {f}: the price is in USD already; remove usd_per_unit or "
     "set currency to the price's currency; fix its value (docs/config.md)"),
    ('currency = "euro"\nusd_per_unit = "1.08"',
     "config key 'compare.currency' in {f}: 'euro' is not a currency code: write three letters, "
     "e.g. USD or EUR; fix its value (docs/config.md)"),
    ('price_per_page = "0"',
     "config key 'compare.price_per_page' in {f}: Input should be greater than 0; fix its value (docs/config.md)"),
    ('price_per_page = true',
     "config key 'compare.price_per_page' in {f}: Input should be a number, not true or false; "
     "fix its value (docs/config.md)"),
    ('usd_per_page = "0.05"',
     "unknown config key 'compare.usd_per_page' in {f}; remove it or fix its spelling (docs/config.md)"),
])
def test_bad_values_are_one_line(tmp_path: Path, toml: str, line: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[compare]\n{toml}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    assert str(err.value.message) == line.format(f=config)


def test_bad_value_through_the_cli(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[compare]\nprice_per_page = "0.199"\ncurrency = "EUR"\n')
    assert one_line(Cli(sqlite_db, config)("report"), 2).startswith(
        f"config key 'compare.usd_per_unit' in {config}: the price is in EUR; ")
    r = Cli(sqlite_db)("report", env={"GPUHIRE_COMPARE__PRICE_PER_PAGE": "cheap"})
    assert one_line(r, 2).startswith("environment variable GPUHIRE_COMPARE__PRICE_PER_PAGE: ")
