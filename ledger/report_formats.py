"""Render a `MonthlyReport`: plain table, Markdown, CSV, JSON-ready dict and self-contained HTML.

JSON and CSV carry every digit (Decimals as exact strings); the table, Markdown and HTML round
money to cents and hours to tenths, for people. Nothing here reads the ledger.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ledger.advice import advice_dict, breakeven_text, payback_text
from ledger.money import json_default, rounded, to_json, usd
from ledger.report import MonthlyReport, Part

UNKNOWN = "unknown"


def money(value: Decimal | None) -> str:
    """USD for people: two places, thousands separated."""
    if value is None:
        return UNKNOWN
    return usd(value)


def hours(value: Decimal) -> str:
    return rounded(value, 1)


def pct(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):+}%"


# -- the stable JSON (docs/json.md, "report") ----------------------------------------------
def _part(p: Part) -> dict[str, Any]:
    return {"key": p.key, "usd": p.usd, "gpu_hours": p.gpu_hours, "sessions": p.sessions}


def report_dict(r: MonthlyReport) -> dict[str, Any]:
    """The report as plain data: Decimals stay Decimal (the JSON writer makes them strings)."""
    s, i, d, o, a = r.spot, r.interruptions, r.idle, r.owned, r.advice
    return {
        "month": r.month,
        "generated_at": r.generated_at,
        "total_usd": r.total_usd,
        "gpu_hours": r.gpu_hours,
        "compute_usd": r.compute_usd,
        "storage_usd": r.storage_usd,
        "ipv4_usd": r.ipv4_usd,
        "sessions": r.sessions,
        "running_sessions": r.running_sessions,
        "by_gpu": [_part(p) for p in r.by_gpu],
        "by_provider": [_part(p) for p in r.by_provider],
        "by_market": [_part(p) for p in r.by_market],
        "by_job": [_part(p) for p in r.by_job],
        "spot": {
            "spot_compute_usd": s.spot_compute_usd, "on_demand_usd": s.on_demand_usd,
            "savings_usd": s.savings_usd, "sessions_known": s.sessions_known,
            "sessions_unknown": s.sessions_unknown, "unknown_compute_usd": s.unknown_compute_usd,
        },
        "interruptions": {"count": i.count, "usd": i.usd, "hours": i.hours},
        "idle": {
            "idle_usd": d.idle_usd, "rent_with_util_usd": d.rent_with_util_usd,
            "sessions_known": d.sessions_known, "sessions_unknown": d.sessions_unknown,
        },
        "owned": {
            "gpu_hours": o.gpu_hours, "running_usd": o.running_usd, "sessions": o.sessions,
            "by_gpu": [_part(p) for p in o.by_gpu],
        },
        "previous": {
            "month": r.previous_month, "total_usd": r.previous_total_usd,
            "change_usd": r.change_usd, "change_pct": r.change_pct,
        },
        # as `gpuhire advise`, less the window's length and the months one by one
        "advice": None if a is None else {
            k: v for k, v in advice_dict(a).items() if k not in ("window_months", "by_month")
        },
        "advice_error": r.advice_error,
        "inference": _inference(r),
    }


def _inference(r: MonthlyReport) -> dict[str, Any] | None:
    """The month's infer jobs, and the comparison with a commercial price (null: no pages)."""
    n = r.inference
    if n is None:
        return None
    return {"jobs": n.jobs, "pages": n.pages, "usd": n.usd.normalize(),
            "comparison": None if n.comparison is None else n.comparison.as_json()}


# -- sections shared by the people formats ----------------------------------------------
def summary_rows(r: MonthlyReport) -> list[tuple[str, str]]:
    """(label, value) lines of the headline section, rounded for people."""
    s, i, d = r.spot, r.interruptions, r.idle
    savings = money(s.savings_usd) if s.sessions_known else UNKNOWN
    if s.sessions_unknown:
        savings += f" ({s.sessions_unknown} spot session(s) without an on-demand price: unknown)"
    idle_text = money(d.idle_usd) if d.sessions_known else UNKNOWN
    if d.sessions_known and d.sessions_unknown:
        idle_text += f" ({d.sessions_unknown} session(s) with unknown utilisation)"
    running = f" ({r.running_sessions} running, costed to now)" if r.running_sessions else ""
    return [
        ("total rent", money(r.total_usd)),
        ("GPU-hours", hours(r.gpu_hours)),
        ("sessions", f"{r.sessions}{running}"),
        ("compute", money(r.compute_usd)),
        ("disk", money(r.storage_usd)),
        ("IPv4", money(r.ipv4_usd)),
        ("spot savings vs on-demand", savings),
        ("interruptions", f"{i.count}, costing {money(i.usd)} and {hours(i.hours)} h of work"),
        ("USD on an idle GPU", idle_text),
        (f"vs {r.previous_month}", f"{money(r.change_usd)} ({pct(r.change_pct)}) "
                                   f"from {money(r.previous_total_usd)}"),
        ("owned hardware (not rent)", f"{hours(r.owned.gpu_hours)} GPU-h, running cost "
                                      f"{money(r.owned.running_usd)}"),
        *inference_rows(r),
    ]


def inference_rows(r: MonthlyReport) -> list[tuple[str, str]]:
    """The month's recognised pages against the commercial price; none without pages."""
    c = r.inference.comparison if r.inference is not None else None
    if r.inference is None or c is None:
        return []
    return [("pages recognised", f"{r.inference.pages:,} in {r.inference.jobs} infer job(s)"),
            ("vs commercial service", c.line), ("per 1,000 pages", c.per_1000_text)]


def breakdowns(r: MonthlyReport) -> list[tuple[str, tuple[Part, ...]]]:
    """The non-empty splits of the month's rent."""
    every = [("GPU model", r.by_gpu), ("provider", r.by_provider), ("market", r.by_market),
             ("job", r.by_job)]
    return [(name, parts) for name, parts in every if parts]


def advice_rows(r: MonthlyReport) -> list[tuple[str, str]]:
    a = r.advice
    if a is None:
        return [("unavailable", r.advice_error)] if r.advice_error else []
    return [
        ("verdict", f"{a.verdict.upper()} ({a.card.label}, {money(a.card.price_usd)})"),
        ("window", f"{a.months[0].month} .. {a.months[-1].month}"),
        ("rent per month", money(a.rent_usd_per_month)),
        ("owning, fixed per month", money(a.own_fixed_usd_per_month)),
        ("owning, running per month", money(a.own_running_usd_per_month)),
        ("payback", payback_text(a)),
        ("break-even use", breakeven_text(a)),
        ("cumulative rent", money(a.cumulative_rent_usd)),
        ("why", a.reason),
    ]


def title(r: MonthlyReport) -> str:
    return f"gpuhire report {r.month}: {money(r.total_usd)} rent, {hours(r.gpu_hours)} GPU-h"


def render(r: MonthlyReport, fmt: str, chart_png: bytes | None = None) -> str:
    """The report as text: `fmt` is table, markdown, csv, json or html (HTML inlines the
    chart's PNG)."""
    if fmt == "json":
        return to_json(report_dict(r)) + "\n"
    if fmt == "html":
        return render_html(r, chart_png)
    renderers = {"table": render_table, "markdown": render_markdown, "csv": render_csv}
    return renderers[fmt](r)


# -- plain table ------------------------------------------------------------------------
def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return [line.rstrip() for line in out]


def render_table(r: MonthlyReport) -> str:
    lines = [title(r), ""]
    lines += _grid(["", ""], summary_rows(r))[2:]
    for name, parts in breakdowns(r):
        lines += ["", f"by {name}"]
        lines += _grid([name, "USD", "GPU-h", "sessions"],
                       [(p.key, money(p.usd), hours(p.gpu_hours), str(p.sessions)) for p in parts])
    if advice_rows(r):
        lines += ["", "buy signal", *_grid(["", ""], advice_rows(r))[2:]]
    return "\n".join(lines) + "\n"


# -- Markdown ---------------------------------------------------------------------------
def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def esc(x: str) -> str:
        return str(x).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return out + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]


def render_markdown(r: MonthlyReport) -> str:
    lines = [f"# {title(r)}", ""]
    lines += _md_table(["item", "value"], summary_rows(r))
    for name, parts in breakdowns(r):
        lines += ["", f"## By {name}", ""]
        lines += _md_table([name, "USD", "GPU-h", "sessions"],
                           [(p.key, money(p.usd), hours(p.gpu_hours), str(p.sessions))
                            for p in parts])
    if advice_rows(r):
        lines += ["", "## Buy signal", "", *_md_table(["item", "value"], advice_rows(r))]
    return "\n".join(lines) + "\n"


# -- CSV: long format, exact ----------------------------------------------------------------
def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and "key" in item:
                rest = {k: v for k, v in item.items() if k != "key"}
                _flatten(f"{prefix}[{item['key']}]", rest, out)
            else:
                out.append((prefix, "" if item is None else _scalar(item)))
    else:
        out.append((prefix, "" if value is None else _scalar(value)))


def _scalar(value: Any) -> str:
    """A CSV cell as the JSON has it: exact Decimals, ISO times, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return str(json_default(value))


def render_csv(r: MonthlyReport) -> str:
    """Two columns, `field,value`: every number of the JSON, exact (e.g. `by_gpu[t4].usd`)."""
    rows: list[tuple[str, str]] = []
    _flatten("", report_dict(r), rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["field", "value"])
    writer.writerows(rows)
    return buf.getvalue()


# -- HTML: one self-contained file --------------------------------------------------------
_CSS = """body{font-family:Helvetica,Arial,sans-serif;max-width:900px;margin:24px auto;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 10px;
text-align:left}th{background:#f3f3f3}h1{font-size:22px}h2{font-size:17px;margin-top:24px}
.verdict{font-weight:bold}img{max-width:100%}"""


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers) if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def render_html(r: MonthlyReport, chart_png: bytes | None = None,
                chart_src: str | None = None) -> str:
    """A whole HTML page; the chart (PNG) is inlined as a data: URI, so the file stands alone.

    Mail clients often drop data: URIs: a mail passes `chart_src="cid:..."` and carries the
    PNG as a related part instead.
    """
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title(r))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title(r))}</h1>",
        _html_table(["", ""], summary_rows(r)),
    ]
    if chart_png or chart_src:
        src = chart_src or "data:image/png;base64," + base64.b64encode(
            chart_png or b"").decode("ascii")
        parts.append("<h2>Rent vs owning</h2>"
                     f'<img id="chart" alt="cumulative rent vs owning" width="800" '
                     f'src="{html.escape(src)}">')
    for name, rows in breakdowns(r):
        parts.append(f"<h2>By {html.escape(name)}</h2>")
        parts.append(_html_table([name, "USD", "GPU-h", "sessions"],
                                 [(p.key, money(p.usd), hours(p.gpu_hours), str(p.sessions))
                                  for p in rows]))
    if advice_rows(r):
        parts.append("<h2>Buy signal</h2>" + _html_table(["", ""], advice_rows(r)))
    parts.append(f"<p><small>generated {html.escape(_scalar(r.generated_at))} by gpuhire; "
                 "exact figures: gpuhire report --format json</small></p></body></html>")
    return "\n".join(parts) + "\n"
