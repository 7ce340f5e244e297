"""UTC helpers: every time in gpuhire is an aware UTC datetime; months are `YYYY-MM` strings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime

from ledger.errors import InputError

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
# The years a user may name. 9999 is left out so that the month after any month a user
# names (a report's exclusive end) still exists; nothing was rented before 1970.
MIN_YEAR, MAX_YEAR = 1970, 9998
_RANGE = f"between {MIN_YEAR}-01 and {MAX_YEAR}-12"


def utcnow() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(text: str, what: str = "time") -> datetime:
    """Parse ISO 8601 (`2026-10-01T08:00:00+02:00`, `...Z`, or a bare date) into aware UTC.

    A time without an offset is taken as UTC; the returned value is always UTC.
    """
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(
            f"{what} {text!r} is not an ISO 8601 time",
            "write it like 2026-10-01T08:00:00Z or 2026-10-01T10:00:00+02:00",
        ) from None
    try:
        moment = as_utc(parsed)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past datetime.max in UTC
        moment = datetime.max.replace(tzinfo=UTC)
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise InputError(f"{what} {text!r} is out of range", f"give a time {_RANGE}")
    return moment


def month_of(moment: datetime) -> str:
    """The `YYYY-MM` month a UTC moment falls in."""
    m = as_utc(moment)
    return f"{m.year:04d}-{m.month:02d}"


def parse_month(text: str) -> str:
    """Validate a `YYYY-MM` month string, 1970-01 to 9998-12."""
    found = _MONTH.match(text.strip())
    if not found:
        raise InputError(f"month {text!r} is not YYYY-MM", "write it like 2026-10")
    if not MIN_YEAR <= int(found.group(1)) <= MAX_YEAR:
        raise InputError(f"month {text!r} is out of range", f"give a month {_RANGE}")
    return text.strip()


def month_start(month: str) -> datetime:
    """The first instant of a `YYYY-MM` month, UTC."""
    if not _MONTH.match(month):  # not the user's range: stored sessions may lie outside it
        raise InputError(f"month {month!r} is not YYYY-MM", "write it like 2026-10")
    year, mon = (int(p) for p in month.split("-"))
    return datetime(year, mon, 1, tzinfo=UTC)


def next_month(month: str) -> str:
    """The month after `month`."""
    year, mon = (int(p) for p in month.split("-"))
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def prev_month(month: str) -> str:
    """The month before `month`."""
    year, mon = (int(p) for p in month.split("-"))
    return f"{year - (mon == 1):04d}-{(mon - 2) % 12 + 1:02d}"


def month_end(month: str) -> datetime:
    """The first instant of the following month (exclusive end), UTC."""
    return month_start(next_month(month))


def last_complete_month(as_of: datetime | date) -> str:
    """The last calendar month that ended before `as_of`'s month began."""
    current = month_of(as_of) if isinstance(as_of, datetime) else f"{as_of.year:04d}-{as_of.month:02d}"
    return prev_month(current)


def months_back(last: str, count: int) -> list[str]:
    """`count` months ending with `last`, oldest first."""
    months = [last]
    while len(months) < count:
        months.insert(0, prev_month(months[0]))
    return months


def split_by_month(start: datetime, end: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    """Yield (month, piece_start, piece_end) covering [start, end) cut at month boundaries."""
    cursor = as_utc(start)
    stop = as_utc(end)
    while cursor < stop:
        month = month_of(cursor)
        boundary = month_end(month)
        piece_end = min(boundary, stop)
        yield month, cursor, piece_end
        cursor = piece_end
