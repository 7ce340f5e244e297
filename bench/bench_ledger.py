"""Benchmark: `advise` and a monthly aggregation over many sessions on SQLite.

The SQL path is what gpuhire runs: closed sessions' costs were computed once (ledger.costs) into
`cost_lines` when they closed, and `advise` / the monthly totals are SQL sums over them. The
baseline is a plain Python loop over the session rows and their price points, costing each
session with ledger.costs and summing in Python. Both give the same totals (checked).

    python bench/bench_ledger.py [--sessions 1000000] [--db PATH]

Target: the SQL path under 1 s for 1,000,000 sessions on this machine.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ledger.advice import advise_from_ledger
from ledger.book import Ledger
from ledger.catalogue import BUILTIN_CARDS
from ledger.costs import CostInput, PriceAt, session_cost
from ledger.db import open_engine
from ledger.models import NANO
from ledger.ownership import OwnershipParams

START = datetime(2024, 1, 1, tzinfo=UTC)
MONTHS = 36
GPUS = (("t4", "g4dn.xlarge", Decimal("0.21")), ("l4", "g6.xlarge", Decimal("0.34")))


def _iso(t: datetime) -> str:
    return t.replace(tzinfo=None).isoformat(sep=" ")


def populate(path: Path, sessions: int, seed: int = 7) -> float:
    """Write `sessions` closed AWS spot sessions over 36 months; return seconds taken."""
    began = time.perf_counter()
    open_engine(f"sqlite:///{path}").dispose()  # schema via the real migrations
    rng = random.Random(seed)
    span_s = MONTHS * 30 * 86400
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    batch_s, batch_p, batch_c = [], [], []
    now = _iso(START)
    for sid in range(1, sessions + 1):
        gpu, itype, base = GPUS[sid % 2]
        start = START + timedelta(seconds=rng.randrange(span_s))
        end = start + timedelta(seconds=rng.randrange(30, 6 * 3600))
        price = base + Decimal(rng.randrange(-40, 40)) / 1000
        reason = "spot-interruption" if rng.random() < 0.05 else "completed"
        cost = session_cost(
            CostInput(start, end, (PriceAt(start, price),), market="spot", end_reason=reason,
                      min_billed_s=60, interruption_free_s=3600, volume_gb=100,
                      ebs_usd_per_gb_month=Decimal("0.08")),
            end,
        )
        batch_s.append((sid, "aws", "us-east-1", "us-east-1a", itype, gpu, 1, "spot", "ended",
                        _iso(start), _iso(end), reason, 100, "gp3", False, "", "{}", 60, 3600,
                        80_000_000, 5_000_000, False, now))
        batch_p.append((sid, "aws", "us-east-1a", itype, "spot", int(price * NANO), _iso(start), now))
        for m in cost.months:
            batch_c.append((sid, m.month, "aws", gpu, "spot", False,
                            int(m.compute_usd * NANO), int(m.storage_usd * NANO),
                            int(m.ipv4_usd * NANO), int(m.duration_s * 10**6),
                            int(m.billed_s * 10**6), int(m.gpu_s * 10**6)))
        if len(batch_s) >= 20_000 or sid == sessions:
            conn.executemany(
                "INSERT INTO rental_sessions (id, provider, region, zone, instance_type, gpu_model,"
                " gpu_count, market, state, start_at, end_at, end_reason, volume_gb, volume_type,"
                " public_ipv4, note, tags, min_billed_s, interruption_free_s, ebs_usd_per_gb_month,"
                " ipv4_usd_per_hour, owned, created_at) VALUES (" + ",".join("?" * 23) + ")",
                batch_s)
            conn.executemany(
                "INSERT INTO price_points (session_id, provider, zone, instance_type, market,"
                " usd_per_hour, in_force_from, recorded_at) VALUES (?,?,?,?,?,?,?,?)", batch_p)
            conn.executemany(
                "INSERT INTO cost_lines (session_id, month, provider, gpu_model, market, owned,"
                " compute_usd, storage_usd, ipv4_usd, duration_us, billed_us, gpu_us)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", batch_c)
            conn.commit()
            batch_s, batch_p, batch_c = [], [], []
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return time.perf_counter() - began


def python_loop(path: Path, months: list[str]) -> dict[str, Decimal]:
    """The baseline: read every session and its prices, cost each in Python, sum per month."""
    conn = sqlite3.connect(path)
    totals = {m: Decimal(0) for m in months}
    rows = conn.execute(
        "SELECT s.start_at, s.end_at, s.market, s.end_reason, s.min_billed_s,"
        " s.interruption_free_s, s.volume_gb, s.ebs_usd_per_gb_month, p.usd_per_hour,"
        " p.in_force_from FROM rental_sessions s JOIN price_points p ON p.session_id = s.id"
    )
    for start, end, market, reason, min_s, free_s, gb, ebs, price, frm in rows:
        s = datetime.fromisoformat(start).replace(tzinfo=UTC)
        cost = session_cost(
            CostInput(s, datetime.fromisoformat(end).replace(tzinfo=UTC),
                      (PriceAt(datetime.fromisoformat(frm).replace(tzinfo=UTC),
                               Decimal(price) / NANO),),
                      market=market, end_reason=reason, min_billed_s=min_s,
                      interruption_free_s=free_s, volume_gb=gb,
                      ebs_usd_per_gb_month=Decimal(ebs) / NANO),
            s,
        )
        for m in cost.months:
            if m.month in totals:
                totals[m.month] += m.total_usd
    conn.close()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse/keep this SQLite file")
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    if not path.exists():
        took = populate(path, args.sessions)
        print(f"populated {args.sessions:,} sessions in {took:.1f} s")
    book = Ledger(open_engine(f"sqlite:///{path}"))
    months = [f"{2024 + i // 12}-{i % 12 + 1:02d}" for i in range(MONTHS)]
    as_of = datetime(2027, 1, 1, tzinfo=UTC)
    card, params = BUILTIN_CARDS["rtx3060"], OwnershipParams()

    t = time.perf_counter()
    advice = advise_from_ledger(book, card, params, as_of)
    t_advise = time.perf_counter() - t
    t = time.perf_counter()
    usage = book.month_usage(months)
    t_months = time.perf_counter() - t
    t = time.perf_counter()
    loop = python_loop(path, months)
    t_loop = time.perf_counter() - t

    worst = max(abs(usage[m][0] - loop[m]) for m in months)
    print(f"advise (SQL)                 {t_advise:8.3f} s   verdict {advice.verdict}")
    print(f"36 monthly totals (SQL)      {t_months:8.3f} s")
    print(f"36 monthly totals (Python)   {t_loop:8.3f} s")
    print(f"ratio Python / SQL           {t_loop / t_months:8.1f} x")
    print(f"largest difference per month {worst} USD (nano-dollar rounding of stored lines)")


if __name__ == "__main__":
    main()
