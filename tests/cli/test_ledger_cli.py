"""`gpuhire ledger|cards|advise` through the CLI runner: exit codes, exact output, bad input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from tests.conftest import Cli

GOOD_CSV = """provider,gpu,count,start,end,usd_per_hour,instance_type,market,zone,volume_gb,end_reason,note
aws,t4,1,2026-10-01T08:00:00Z,2026-10-01T08:00:59Z,0.20,g4dn.xlarge,spot,us-east-1a,100,completed,short
runpod,a100,2,2026-10-02T10:00:00+02:00,2026-10-02T11:00:00+02:00,2.38,,on-demand,,0,,
"""


def test_add_then_list_json(cli: Cli) -> None:
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--start", "2026-10-01T08:00Z",
            "--end", "2026-10-01T09:00Z", "--usd-per-hour", "0.36", "--market", "spot")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "recorded session 1: 3600 s billed, $0.3600\n"
    rows = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert rows[0]["total_usd"] == "0.36" and rows[0]["billed_s"] == 3600
    assert rows[0]["start"] == "2026-10-01T08:00:00Z"


def test_import_then_list_month_csv(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "rent.csv"
    f.write_text(GOOD_CSV)
    r = cli("ledger", "import", str(f))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("imported 2 session(s)")
    out = cli("ledger", "list", "--month", "2026-10", "--format", "csv").stdout.splitlines()
    assert out[0].startswith("id,provider,")
    assert len(out) == 3
    header = out[0].split(",")
    second = dict(zip(header, out[2].split(","), strict=True))
    assert second["start"] == "2026-10-02T08:00:00Z"
    assert second["total_usd"] == "2.38" and second["gpu_count"] == "2"


def test_import_bad_rows_names_each_and_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(
        "provider,gpu,start,end,usd_per_hour,market\n"
        "aws,t4,2026-10-01T08:00Z,2026-10-01T09:00Z,0.2,spot\n"
        "aws,t4,yesterday,2026-10-01T09:00Z,0.2,spot\n"
        "aws,t4,2026-10-01T08:00Z,2026-10-01T09:00Z,cheap,spot\n"
        "aws,t4,2026-10-01T08:00Z,2026-10-01T09:00Z,0.2,reserved\n"
    )
    r = cli("ledger", "import", str(f))
    assert r.exit_code == 2
    assert r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("error: ")
    assert "3 bad row(s), nothing was written" in line
    assert "line 3: start 'yesterday' is not an ISO 8601 time" in line
    assert "line 4: usd_per_hour 'cheap' is not a number" in line
    assert "line 5: market 'reserved' is unknown; use spot or on-demand" in line
    assert json.loads(cli("ledger", "list", "--format", "json").stdout) == []


def test_import_unknown_column_and_missing_file(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "cols.csv"
    f.write_text("provider,gpu,start,price\naws,t4,2026-10-01T08:00Z,1\n")
    r = cli("ledger", "import", str(f))
    assert r.exit_code == 2 and "missing column(s) usd_per_hour" in r.stderr
    assert "unknown column(s) price" in r.stderr
    r = cli("ledger", "import", str(tmp_path / "nope.csv"))
    assert r.exit_code == 2 and "cannot read" in r.stderr and "check the path" in r.stderr


def test_bad_flags_give_one_line(cli: Cli) -> None:
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--start", "2026-10-01T08:00Z",
            "--end", "2026-10-01T07:00Z", "--usd-per-hour", "0.2")
    assert r.exit_code == 2
    assert r.stderr == "error: the session ends before it starts; check --start and --end\n"
    r = cli("ledger", "list", "--month", "2026-13")
    assert r.exit_code == 2 and r.stderr == "error: month '2026-13' is not YYYY-MM; write it like 2026-10\n"
    r = cli("ledger", "list", "--format", "xml")
    assert r.exit_code == 2 and "'xml' is not one of" in r.stderr


def test_running_session_listed_as_running(cli: Cli) -> None:
    r = cli("ledger", "add", "--provider", "lambda", "--gpu", "a10g", "--start", "2026-10-01T08:00Z",
            "--usd-per-hour", "0.75")
    assert r.exit_code == 0 and "running" in r.stdout
    (row,) = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert row["running"] is True and row["end"] is None and float(row["total_usd"]) > 0


def test_cards_lists_builtins_and_config_cards(tmp_path: Path, sqlite_db: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[cards.a6000]\nlabel = "RTX A6000"\nprice_usd = "4650"\npower_w = "300"\nspeed = "3"\n')
    rows = json.loads(Cli(sqlite_db, cfg)("cards", "--format", "json").stdout)
    names = [r["name"] for r in rows]
    assert names[:6] == ["rtx3060", "rtx4060ti", "rtx4070", "rtx4090", "t4", "l4"]
    a6000 = rows[names.index("a6000")]
    assert a6000["price_usd"] == "4650" and a6000["source"] == "config"


def _pipeline(cli: Cli) -> None:
    """8 hours a day on a T4 spot at 0.20 USD/h through Aug-Oct 2026."""
    lines = ["provider,gpu,start,end,usd_per_hour,market"]
    for month, days in (("08", 31), ("09", 30), ("10", 31)):
        for day in range(1, days + 1):
            lines.append(f"runpod,t4,2026-{month}-{day:02d}T09:00Z,2026-{month}-{day:02d}T17:00Z,0.20,spot")
    path = Path(cli.db.removeprefix("sqlite:///")).with_suffix(".csv")
    path.write_text("\n".join(lines) + "\n")
    assert cli("ledger", "import", str(path)).exit_code == 0


def test_advise_json_buy_for_a_continuous_pipeline(cli: Cli) -> None:
    _pipeline(cli)
    r = cli("advise", "--card", "rtx3060", "--as-of", "2026-11-15", "--format", "json")
    assert r.exit_code == 0, r.stderr
    a = json.loads(r.stdout)
    assert list(a)[:11] == [
        "verdict", "card", "window_months", "months", "rent_usd_per_month",
        "own_fixed_usd_per_month", "own_running_usd_per_month", "payback_months",
        "breakeven_hours_per_month", "cumulative_rent_usd", "reason",
    ]
    assert a["verdict"] == "buy" and a["card"] == "rtx3060" and a["window_months"] == 3
    assert a["months"] == ["2026-08", "2026-09", "2026-10"]
    assert a["rent_usd_per_month"] == "49.06666666666666666666666667"  # (49.6+48+49.6)/3
    assert a["cumulative_rent_usd"] == "147.2"
    assert float(a["payback_months"]) < 12


def test_advise_as_of_is_repeatable_and_flags_override(cli: Cli) -> None:
    _pipeline(cli)
    first = cli("advise", "--as-of", "2026-11-15", "--format", "json").stdout
    assert first == cli("advise", "--as-of", "2026-11-30T23:59Z", "--format", "json").stdout
    r = cli("advise", "--as-of", "2026-11-15", "--usd-per-kwh", "3", "--format", "json")
    assert json.loads(r.stdout)["verdict"] != "buy"
    text = cli("advise", "--as-of", "2026-11-15").stdout
    assert text.startswith("verdict: BUY  (RTX 3060 12 GB, $329)")
    assert "why: the RTX 3060 12 GB would pay for itself in" in text


def test_advise_has_a_flag_for_every_ownership_key_and_speeds(cli: Cli, tmp_path: Path) -> None:
    from launcher.config import OwnershipSettings

    help_text = cli("advise", "--help").stdout
    for key in OwnershipSettings.model_fields:
        assert "--" + key.replace("_", "-") in help_text, key
    assert "--speed" in help_text
    _pipeline(cli)
    base = json.loads(cli("advise", "--as-of", "2026-11-15", "--format", "json").stdout)
    r = cli("advise", "--as-of", "2026-11-15", "--format", "json", "--speed", "T4=2", "--speed", "a100=4")
    assert r.exit_code == 0, r.stderr
    fast = json.loads(r.stdout)
    # Twice the work per rented hour on the same card: twice the electricity.
    assert Decimal(fast["own_running_usd_per_month"]) == 2 * Decimal(base["own_running_usd_per_month"])
    # A flag beats [speeds] in the config file.
    cfg = tmp_path / "config.toml"
    cfg.write_text('[speeds]\nt4 = "3"\n')
    with_cfg = Cli(cli.db, cfg)
    from_file = json.loads(with_cfg("advise", "--as-of", "2026-11-15", "--format", "json").stdout)
    assert Decimal(from_file["own_running_usd_per_month"]) == 3 * Decimal(base["own_running_usd_per_month"])
    r = with_cfg("advise", "--as-of", "2026-11-15", "--format", "json", "--speed", "t4=2")
    assert json.loads(r.stdout)["own_running_usd_per_month"] == fast["own_running_usd_per_month"]


def test_bad_advise_flags_name_the_flag(cli: Cli) -> None:
    cases = {
        ("--window-months", "0"): "error: --window-months 0: Input should be greater than or equal to 1",
        ("--usd-per-kwh", "cheap"): "error: --usd-per-kwh cheap: Input should be a valid decimal",
        ("--resale-fraction", "1"): "error: --resale-fraction 1: Input should be less than 1",
        ("--speed", "a100=-1"): "error: --speed a100=-1: Input should be greater than 0",
        ("--speed", "a100"): "error: --speed 'a100' is not GPU=FACTOR; write it like --speed a100=4.5",
    }
    for args, start in cases.items():
        r = cli("advise", *args)
        assert r.exit_code == 2, args
        assert r.stderr.startswith(start) and r.stderr.count("\n") == 1, r.stderr
        assert "config key" not in r.stderr


def test_advise_unknown_card_and_bad_date(cli: Cli) -> None:
    r = cli("advise", "--card", "voodoo2")
    assert r.exit_code == 1 and r.stderr.startswith("error: unknown card 'voodoo2'; choose one of")
    r = cli("advise", "--as-of", "soon")
    assert r.exit_code == 2 and "--as-of 'soon' is not an ISO 8601 time" in r.stderr


def test_config_file_env_and_flag_precedence(tmp_path: Path, sqlite_db: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[ownership]\ncard = "rtx4090"\n')
    cli = Cli(sqlite_db, cfg)
    assert "RTX 4090" in cli("advise", "--as-of", "2026-11-01").stdout
    env = {"GPUHIRE_OWNERSHIP__CARD": "rtx4070"}
    assert "RTX 4070" in cli("advise", "--as-of", "2026-11-01", env=env).stdout
    assert "RTX 3060" in cli("advise", "--as-of", "2026-11-01", "--card", "rtx3060", env=env).stdout


def test_malformed_config_is_one_line_naming_the_key(tmp_path: Path, sqlite_db: str) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[ownership]\nusd_per_kwh = "cheap"\n')
    r = Cli(sqlite_db, cfg)("cards")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: config key 'ownership.usd_per_kwh' in ")
    cfg.write_text('[ownershp]\ncard = "rtx3060"\n')
    r = Cli(sqlite_db, cfg)("cards")
    assert r.exit_code == 2 and "unknown config key 'ownershp'" in r.stderr
    cfg.write_text("[ownership\n")
    r = Cli(sqlite_db, cfg)("cards")
    assert r.exit_code == 2 and "is not valid TOML" in r.stderr
    r = Cli(sqlite_db, tmp_path / "missing.toml")("cards")
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_partial_provider_override_keeps_the_builtin_rules(tmp_path: Path, sqlite_db: str) -> None:
    from launcher.config import load_settings
    from ledger.catalogue import BillingRules

    cfg = tmp_path / "config.toml"
    cfg.write_text('[providers.aws]\nebs_usd_per_gb_month = "0.10"\n'
                   '[providers.LOCAL]\nipv4_usd_per_hour = "0.001"\n'
                   '[providers.runpod]\nmin_billed_s = 60\n')
    settings = load_settings(cfg)
    assert settings.billing_rules("aws") == BillingRules(60, 3600, Decimal("0.10"), Decimal("0.005"))
    assert settings.billing_rules("local") == BillingRules(ipv4_usd_per_hour=Decimal("0.001"), owned=True)
    assert settings.billing_rules("runpod") == BillingRules(min_billed_s=60)
    assert settings.billing_rules("lambda") == BillingRules()
    # Through the CLI: a 50-minute EC2 interruption is still free, IPv4 still billed, the new
    # EBS rate applies (100 GB x 0.10 USD/GB-month for 50 of 730 x 60 minutes).
    cli = Cli(sqlite_db, cfg)
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--market", "spot",
            "--start", "2026-10-01T08:00Z", "--end", "2026-10-01T08:50Z", "--usd-per-hour", "0.5",
            "--end-reason", "spot-interruption", "--public-ipv4", "--volume-gb", "100")
    assert r.exit_code == 0, r.stderr
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--start", "2026-10-02T08:00Z",
            "--end", "2026-10-02T08:00:30Z", "--usd-per-hour", "3.6")
    assert r.stdout == "recorded session 2: 60 s billed, $0.0600\n"
    first = json.loads(cli("ledger", "list", "--format", "json").stdout)[0]
    assert first["compute_usd"] == "0" and first["interruption_free"] is True
    assert Decimal(first["ipv4_usd"]) == Decimal("0.005") * 50 / 60
    assert Decimal(first["storage_usd"]) == Decimal(100) * Decimal("0.10") * 3000 / (730 * 3600)


def test_tiny_amounts_are_fixed_point_in_json_and_csv(cli: Cli) -> None:
    # 1 s at 0.000036 USD/h = 1E-8 USD: str(Decimal) would write "1E-8".
    r = cli("ledger", "add", "--provider", "runpod", "--gpu", "t4", "--start", "2026-10-01T08:00:00Z",
            "--end", "2026-10-01T08:00:01Z", "--usd-per-hour", "0.000036")
    assert r.exit_code == 0, r.stderr
    row = json.loads(cli("ledger", "list", "--format", "json").stdout)[0]
    assert row["total_usd"] == "0.00000001" and row["usd_per_hour"] == "0.000036"
    out = cli("ledger", "list", "--format", "csv").stdout.splitlines()
    csv_row = dict(zip(out[0].split(","), out[1].split(","), strict=True))
    assert csv_row["total_usd"] == "0.00000001" and csv_row["compute_usd"] == "0.00000001"
    assert "E-" not in "\n".join(out)


def test_on_demand_price_recorded_by_hand_gives_spot_savings(cli: Cli, tmp_path: Path) -> None:
    r = cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--market", "spot",
            "--start", "2026-10-01T08:00Z", "--end", "2026-10-01T18:00Z", "--usd-per-hour", "0.20",
            "--on-demand-usd-per-hour", "0.526")
    assert r.exit_code == 0, r.stderr
    f = tmp_path / "rent.csv"
    f.write_text("provider,gpu,start,end,usd_per_hour,market,on-demand-usd-per-hour\n"
                 "runpod,a10g,2026-10-02T08:00Z,2026-10-02T10:00Z,0.30,spot,0.44\n"
                 "runpod,a10g,2026-10-03T08:00Z,2026-10-03T10:00Z,0.30,spot,\n")
    assert cli("ledger", "import", str(f)).exit_code == 0
    rows = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert [r["on_demand_usd_per_hour"] for r in rows] == ["0.526", "0.44", None]
    spot = json.loads(cli("report", "--month", "2026-10", "--format", "json").stdout)["spot"]
    # 10 h x (0.526 - 0.20) + 2 h x (0.44 - 0.30) = 3.26 + 0.28; the third session is unknown
    assert Decimal(spot["savings_usd"]) == Decimal("3.54")
    assert (spot["sessions_known"], spot["sessions_unknown"]) == (2, 1)
    f.write_text("provider,gpu,start,usd_per_hour,on_demand_usd_per_hour\n"
                 "runpod,a10g,2026-10-02T08:00Z,0.30,lots\n"
                 "runpod,a10g,2026-10-02T08:00Z,0.30,-1\n")
    r = cli("ledger", "import", str(f))
    assert r.exit_code == 2
    assert "line 2: on_demand_usd_per_hour 'lots' is not a number" in r.stderr
    assert "line 3: on-demand price -1 USD/h is negative; give a price >= 0" in r.stderr


def test_tables_are_not_folded_at_80_columns_when_piped(cli: Cli, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    cli("ledger", "add", "--provider", "aws", "--gpu", "t4", "--market", "spot", "--start",
        "2026-10-01T08:00Z", "--end", "2026-10-01T18:00Z", "--usd-per-hour", "0.20",
        "--end-reason", "spot-interruption")
    out = cli("ledger", "list").stdout.splitlines()
    [row] = [line for line in out if "2026-10-01T08:00:00Z" in line]
    assert max(len(line) for line in out) > 80
    assert "2026-10-01T18:00:00Z" in row and "spot-interruption" in row and "$2.0000" in row
    # An explicit COLUMNS is honoured (rich folds to it).
    narrow = cli("ledger", "list", env={"COLUMNS": "60"}).stdout.splitlines()
    assert max(len(line) for line in narrow) <= 60


def test_list_shows_each_jobs_quote_error(cli: Cli) -> None:
    from datetime import UTC, datetime

    from ledger.book import Ledger, NewSession
    from ledger.catalogue import DEFAULT_RULES
    from ledger.db import open_engine
    from ledger.models import Job

    book = Ledger(open_engine(cli.db))
    book.create_job(Job(id="quoted", kind="train", gpu_model="cpu", quoted_s=240.0,
                        quoted_usd=Decimal("0.0012"), actual_s=220.0, actual_usd=Decimal("0.0011")))
    book.create_job(Job(id="running", kind="train", gpu_model="cpu", quoted_s=240.0))
    start = datetime(2026, 10, 1, 8, tzinfo=UTC)
    for job in ("quoted", "running", None):
        book.record_session(NewSession(provider="local", gpu_model="cpu", start_at=start,
                                       end_at=start.replace(hour=9), usd_per_hour=Decimal("0.02"),
                                       job_id=job), DEFAULT_RULES)
    rows = json.loads(cli("ledger", "list", "--format", "json").stdout)
    assert [r["quote_error"] for r in rows] == [-0.0833, None, None]
    table = cli("ledger", "list").stdout
    assert " quote" in table and table.count("-8 %") == 1
    header = cli("ledger", "list", "--format", "csv").stdout.splitlines()[0]
    assert header.endswith(",quote_error")
