"""What the pages would have cost at a commercial recognition service, next to what they cost here.

The `[compare]` section of the config (docs/config.md) holds the commercial price per page, its
currency, its public source and its date. The default is Transkribus's print model "M1": USD 54.25
per 1,000 pages (arXiv 2504.00414, Table 1, 2025), i.e. USD 0.05425 a page. A price in another
currency (Transkribus's price list: 1,000 credits for EUR 199, one credit a page) needs
`usd_per_unit`, the USD one unit of that currency buys, so a comparison never mixes currencies.

`commercial_comparison(pages, usd, settings)` is pure: the infer summary and the monthly report
(ledger/report.py) both call it. From the launcher's loaded config it is
`commercial_comparison(pages, usd, settings.compare)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from ledger import money
from ledger.money import exact
from ledger.settings_model import SETTINGS_CONFIG, no_bool_numbers

PER = 1000  # the comparison's unit: cost per 1,000 pages
NANO_USD = Decimal("0.000000001")  # the ledger's resolution: per-1,000-page figures are rounded to it


class CompareSettings(BaseModel):
    """[compare]: the commercial per-page price the cost of `gpuhire infer` is compared with."""

    model_config = SETTINGS_CONFIG
    refuse_booleans = field_validator("*", mode="before")(no_bool_numbers)

    service: str = Field("Transkribus", min_length=1, max_length=80)  # whose price it is
    price_per_page: Decimal = Field(Decimal("0.05425"), gt=0, le=1000)  # in `currency`
    currency: str = "USD"  # ISO 4217 code of price_per_page
    usd_per_unit: Decimal | None = Field(None, gt=0, le=1_000_000)  # USD for 1 unit of currency
    source: str = "arXiv 2504.00414, Table 1: print model M1, USD 54.25 per 1,000 pages"
    as_of: str = "2025"  # when the price was read

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isascii() or not code.isalpha():
            raise ValueError(f"{value!r} is not a currency code: write three letters, e.g. USD or EUR")
        return code

    @model_validator(mode="after")
    def _exchange_rate(self) -> CompareSettings:
        if self.currency != "USD" and self.usd_per_unit is None:
            raise ValueError(
                f"compare.usd_per_unit: the price is in {self.currency}; set usd_per_unit to the USD "
                f"one {self.currency} buys (e.g. \"1.08\") so it can be compared with the USD spent here")
        if self.currency == "USD" and self.usd_per_unit not in (None, Decimal(1)):
            raise ValueError("compare.usd_per_unit: the price is in USD already; remove usd_per_unit "
                             "or set currency to the price's currency")
        return self


@dataclass(frozen=True)
class Comparison:
    """`pages` recognised for `usd` here, against the commercial price of `settings`."""

    pages: int
    usd: Decimal  # what the pages cost here
    settings: CompareSettings

    @property
    def commercial_usd_per_page(self) -> Decimal:
        return self.settings.price_per_page * (self.settings.usd_per_unit or 1)

    @property
    def commercial_usd(self) -> Decimal:
        """The same pages at the commercial price, in USD (exact)."""
        return self.pages * self.commercial_usd_per_page

    @property
    def commercial_price(self) -> Decimal:
        """The same pages at the commercial price, in its own currency (exact)."""
        return self.pages * self.settings.price_per_page

    @property
    def usd_per_1000_pages(self) -> Decimal:
        """Here, per 1,000 pages, rounded half up to nano-USD (a division need not end)."""
        return (self.usd * PER / self.pages).quantize(NANO_USD, ROUND_HALF_UP)

    @property
    def commercial_usd_per_1000_pages(self) -> Decimal:
        return self.commercial_usd_per_page * PER

    @property
    def savings_usd(self) -> Decimal:
        """What the pages would have cost there, less what they cost here."""
        return self.commercial_usd - self.usd

    @property
    def line(self) -> str:
        """"these 3,000 pages cost $4.10 here; at the commercial price of $0.05425/page: $162.75"."""
        s = self.settings
        these = "this page" if self.pages == 1 else f"these {self.pages:,} pages"
        price = f"{_price(s.price_per_page, s.currency)}/page"
        if s.currency != "USD":
            price += (f" (at {exact(s.usd_per_unit or Decimal(1))} USD/{s.currency}: "
                      f"{_price(self.commercial_usd_per_page, 'USD')}/page)")
        return (f"{these} cost {_amount(self.usd)} here; "
                f"at the commercial price of {price}: {_amount(self.commercial_usd)}")

    @property
    def per_1000_text(self) -> str:
        """"$1.37 here, $54.25 at Transkribus (arXiv ..., 2025)": the cost per 1,000 pages."""
        s = self.settings
        return (f"{_amount(self.usd_per_1000_pages)} here, "
                f"{_amount(self.commercial_usd_per_1000_pages)} at {s.service} ({s.source}, {s.as_of})")

    @property
    def per_1000_line(self) -> str:
        return f"per 1,000 pages: {self.per_1000_text}"

    def as_json(self) -> dict[str, Any]:
        """Plain data, Decimals kept, without trailing zeros (the JSON writer makes them exact
        strings: "162.75", not "162.75000")."""
        s = self.settings
        return _normalized({
            "pages": self.pages,
            "usd": self.usd,
            "usd_per_1000_pages": self.usd_per_1000_pages,
            "commercial": {
                "service": s.service,
                "price_per_page": s.price_per_page,
                "currency": s.currency,
                "usd_per_unit": s.usd_per_unit,
                "usd_per_page": self.commercial_usd_per_page,
                "usd_per_1000_pages": self.commercial_usd_per_1000_pages,
                "usd": self.commercial_usd,
                "price": self.commercial_price,
                "source": s.source,
                "as_of": s.as_of,
            },
            "savings_usd": self.savings_usd,
            "line": self.line,
        })


def commercial_comparison(pages: int, usd: Decimal, settings: CompareSettings) -> Comparison | None:
    """The comparison for `pages` that cost `usd` here; None when no page was recognised."""
    if pages <= 0:
        return None
    return Comparison(pages=pages, usd=Decimal(usd), settings=settings)


def _normalized(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _normalized(v) if isinstance(v, dict) else v.normalize() if isinstance(v, Decimal) else v
            for k, v in data.items()}


def _price(value: Decimal, currency: str) -> str:
    """A per-page price with every digit it has, at least cents: $0.05425, $0.10, EUR 0.199."""
    cents = value.quantize(Decimal("0.01"))
    digits = format(cents if cents == value else value.normalize(), "f")
    if currency == "USD":
        return f"${digits}"
    return f"{currency} {digits}"


def _amount(value: Decimal) -> str:
    """USD for people: cents, thousands separated; below a cent two significant digits
    ($0.0042, $0.004), so a small cost never reads as $0.00."""
    if value == 0 or abs(value) >= Decimal("0.01"):
        return money.usd(value)
    small = value.quantize(Decimal(1).scaleb(value.adjusted() - 1), ROUND_HALF_UP)
    return f"{'-' if small < 0 else ''}${exact(abs(small).normalize())}"
