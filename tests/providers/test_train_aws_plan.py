"""`gpuhire train --provider aws`: the plan a dry run shows, on-demand kept on resume, and the
on-demand fallback when no spot price exists. moto as EC2 (in-process), the real CLI."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from aws_fakes import AMI_PARAMETER, OPERATOR, AwsWorld

from jobs.htr.synth import synth
from launcher.errors import SshError
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job
from tests.conftest import Cli


@pytest.fixture
def gt(tmp_path: Path) -> Path:
    synth(tmp_path / "gt", 20, seed=1)
    return tmp_path / "gt"


def _cli(tmp_path: Path, db: str, fallback: bool = False) -> Cli:
    config = tmp_path / "config.toml"
    config.write_text(
        "[aws]\n"
        f'ami_parameter = "{AMI_PARAMETER}"\noperator_cidrs = ["{OPERATOR}"]\n'
        f"fallback_on_demand = {'true' if fallback else 'false'}\n"
        '[train]\nruntime = "process"\n'
    )
    return Cli(db, config)


def test_dry_run_shows_the_offer_it_would_rent(make_provider, world: AwsWorld, gt: Path,
                                               tmp_path: Path, sqlite_db: str) -> None:
    r = _cli(tmp_path, sqlite_db)("train", str(gt), "--provider", "aws", "--gpu", "t4", "--dry-run",
                                  "--out", str(tmp_path / "run"))
    assert r.exit_code == 0, r.stderr
    assert ("plan: spot g4dn.2xlarge (8 vCPUs) in us-east-1b at $0.1800/h (on-demand $0.752/h); "
            "3 more offer(s) to fall back on; process runtime") in r.stderr
    assert "at $0.1800/h = $" in r.stderr and "dry run: nothing rented" in r.stderr  # the quote too
    assert "RunInstances" not in {op for _, op in world.calls}


def test_no_spot_price_anywhere_falls_back_to_on_demand_when_allowed(
        make_provider, world: AwsWorld, gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    world.prices = []  # no spot price for any T4 type in any zone
    r = _cli(tmp_path, sqlite_db)("train", str(gt), "--provider", "aws", "--gpu", "t4", "--dry-run",
                                  "--out", str(tmp_path / "a"))
    assert r.exit_code == 1
    assert "no T4 spot offers in us-east-1" in r.stderr and "fallback_on_demand" in r.stderr
    r = _cli(tmp_path, sqlite_db, fallback=True)("train", str(gt), "--provider", "aws", "--gpu", "t4",
                                                 "--dry-run", "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.stderr
    assert "plan: on-demand g4dn.xlarge (4 vCPUs) in us-east-1" in r.stderr
    assert "at $0.526/h" in r.stderr


def test_resume_rents_on_demand_again(make_provider, world: AwsWorld, gt: Path, tmp_path: Path,
                                      sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_: object, **__: object) -> None:  # no box to SSH into in this test
        raise SshError("cannot reach the box", "it is a test")

    monkeypatch.setattr("launcher.providers.aws.provider.AwsProvider._machine", unreachable)
    cli = _cli(tmp_path, sqlite_db)
    run = tmp_path / "run"
    r = cli("train", str(gt), "--provider", "aws", "--gpu", "t4", "--on-demand", "--yes", "--out", str(run))
    assert r.exit_code == 1 and "cannot reach the box" in r.stderr
    state = json.loads((run / "state.json").read_text())
    assert state["market"] == "on-demand"
    state["status"] = "running"  # as if the launcher had been killed while the job ran
    (run / "state.json").write_text(json.dumps(state))
    r = cli("resume", state["job"], "--runs", str(tmp_path))
    assert r.exit_code == 1 and "cannot reach the box" in r.stderr
    assert len(world.run_params) == 2
    assert all("InstanceMarketOptions" not in p for p in world.run_params)  # both on demand


# -- --gpu auto rents what exists ----------------------------------------------------------
def _auto(tmp_path: Path, db: str, gt: Path, name: str, *extra: str):
    return _cli(tmp_path, db)("train", str(gt), "--provider", "aws", "--gpu", "auto", "--preset",
                              "tiny", "--epochs", "50", "--dry-run", "--format", "json",
                              "--out", str(tmp_path / name), *extra)


def test_auto_skips_a_gpu_type_without_offers_and_names_it(make_provider, world: AwsWorld, gt: Path,
                                                          tmp_path: Path, sqlite_db: str) -> None:
    world.prices = [p for p in world.prices if p[1].startswith("g4dn")]  # no L4 in this region
    r = _auto(tmp_path, sqlite_db, gt, "run")
    assert r.exit_code == 0, r.stderr
    assert "skipped l4: no L4 spot offers in us-east-1" in r.stderr
    assert "plan: spot g4dn.2xlarge (8 vCPUs) in us-east-1b" in r.stderr
    out = json.loads(r.stdout)
    assert out["gpu_choice"]["gpu"] == "t4" and out["quote"]["gpu"] == "t4"
    assert out["gpu_choice"]["skipped"] == {"l4": "no L4 spot offers in us-east-1"}
    assert list(out["gpu_choice"]["expected_usd"]) == ["t4"]


def test_auto_with_no_offer_at_all_names_where_one_is(make_provider, world: AwsWorld, gt: Path,
                                                     tmp_path: Path, sqlite_db: str) -> None:
    world.prices = []  # no spot price for any type: on-demand would still rent both
    r = _auto(tmp_path, sqlite_db, gt, "run")
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: no GPU type has an offer: no T4 spot offers in us-east-1; "
                           "no L4 spot offers in us-east-1 (on-demand T4, L4 offered in us-east-1)")
    assert "--on-demand" in line and "Traceback" not in r.stderr


def test_auto_chooses_by_this_jobs_expected_cost(make_provider, world: AwsWorld, gt: Path,
                                                 tmp_path: Path, sqlite_db: str) -> None:
    """20 lines x 50 epochs is a short job: the boot overhead dominates and the cheaper T4 wins
    (by price per speed alone, L4: 0.29/2 < 0.18/1). A measured `tiny` T4 speed of 1 line/s
    makes the same job dearer there; a `large` measurement changes nothing for `tiny`."""
    r = _auto(tmp_path, sqlite_db, gt, "a")
    assert r.exit_code == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["gpu_choice"]["gpu"] == "t4" and first["gpu_choice"]["skipped"] == {}
    assert first["quote"]["throughput_source"] == "default" and first["quote"]["model_size"] == "tiny"
    assert "--gpu auto: t4 ($" in r.stderr and "l4 $" in r.stderr
    book = Ledger(open_engine(sqlite_db))
    book.create_job(Job(id="big", kind="train", status="done", gpu_model="t4", model_size="large",
                        device="cuda", lines_per_s=1.0))
    assert json.loads(_auto(tmp_path, sqlite_db, gt, "b").stdout)["gpu_choice"]["gpu"] == "t4"
    book.create_job(Job(id="slow", kind="train", status="done", gpu_model="t4", model_size="tiny",
                        device="cuda", lines_per_s=1.0))
    r = _auto(tmp_path, sqlite_db, gt, "c")
    out = json.loads(r.stdout)
    assert out["gpu_choice"]["gpu"] == "l4" and out["quote"]["gpu"] == "l4"
    assert "plan: spot g6.2xlarge" in r.stderr
    expected = {g: Decimal(u) for g, u in out["gpu_choice"]["expected_usd"].items()}
    assert expected["t4"] > expected["l4"] > 0
