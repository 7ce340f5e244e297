"""`gpuhire ledger import`: a file imported twice is refused (the rent would double), a header
with a column twice is refused naming it; nothing is written when refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_bad_input import one_line
from tests.conftest import Cli

RENT = """provider,gpu,start,end,usd_per_hour,instance_type,zone
runpod,a100,2026-10-01T08:00Z,2026-10-01T09:00Z,1.19,,
runpod,a100,2026-10-02T08:00Z,2026-10-02T09:00Z,1.19,,
"""


def ids(cli: Cli) -> list[int]:
    return [r["id"] for r in json.loads(cli("ledger", "list", "--format", "json").stdout)]


def test_importing_a_file_twice_is_refused(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "rent.csv"
    f.write_text(RENT)
    assert cli("ledger", "import", str(f)).exit_code == 0
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f}: 2 row(s) are already in the ledger (first: line 2), nothing was written; "
        "importing a file twice would count its rent twice: remove those rows, or pass "
        "--allow-duplicates if they are other sessions"
    )
    assert ids(cli) == [1, 2]


def test_one_old_row_among_new_ones_stops_the_whole_file(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "rent.csv"
    f.write_text(RENT)
    assert cli("ledger", "import", str(f)).exit_code == 0
    g = tmp_path / "more.csv"
    g.write_text(
        "provider,gpu,start,end,usd_per_hour\n"
        "runpod,a100,2026-10-03T08:00Z,2026-10-03T09:00Z,1.19\n"
        "lambda,a100,2026-10-02T08:00Z,2026-10-02T09:00Z,1.19\n"  # another provider: new
        "RunPod,A100,2026-10-02T10:00+02:00,2026-10-02T11:00+02:00,1.190\n"  # line 2 of rent.csv
    )
    line = one_line(cli("ledger", "import", str(g)), 2)
    assert line.startswith(f"{g}: 1 row(s) are already in the ledger (first: line 4), nothing")
    assert ids(cli) == [1, 2]


def test_allow_duplicates_records_them_again(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "rent.csv"
    f.write_text(RENT)
    assert cli("ledger", "import", str(f)).exit_code == 0
    r = cli("ledger", "import", str(f), "--allow-duplicates")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"imported 2 session(s) from {f} (ids 3-4)")
    assert sorted(ids(cli)) == [1, 2, 3, 4]


def test_a_column_twice_in_the_header_is_named(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "twice.csv"
    f.write_text("provider,gpu,start,usd_per_hour,provider\nrunpod,a100,2026-10-01T08:00Z,1,aws\n")
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f}: column 'provider' appears twice in the header; keep one of them"
    )
    f.write_text("provider,gpu,start,usd_per_hour,usd-per-hour\nrunpod,a100,2026-10-01T08:00Z,1,2\n")
    assert one_line(cli("ledger", "import", str(f)), 2) == (
        f"{f}: column 'usd_per_hour' (as 'usd_per_hour' and 'usd-per-hour') appears twice in "
        "the header; keep one of them"
    )
    assert ids(cli) == []
