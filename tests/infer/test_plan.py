"""The planner: CPU for a coffee-break job, the cheapest GPU otherwise, `--gpu` obeyed; the quote
as JSON; calibration measured on this CPU and reused."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher.cli import app
from launcher.infer.plan import DEFAULT_INFER_LINES_PER_S, DEFAULT_LINES_PER_PAGE, GpuPrice, PlanInputs, plan
from ledger.book import Ledger
from ledger.db import open_engine


def _inputs(pages: int, **kw: object) -> PlanInputs:
    gpus = (GpuPrice("t4", Decimal("0.21"), DEFAULT_INFER_LINES_PER_S["t4"], "default"),
            GpuPrice("l4", Decimal("0.34"), DEFAULT_INFER_LINES_PER_S["l4"], "default"))
    base: dict[str, object] = dict(pages=pages, lines=int(pages * DEFAULT_LINES_PER_PAGE),
                                   cpu_lines_per_s=DEFAULT_INFER_LINES_PER_S["cpu"], cpu_source="default",
                                   cpu_usd_per_hour=Decimal("0.0195"), gpus=gpus)
    base.update(kw)
    return PlanInputs(**base)  # type: ignore[arg-type]


def test_ten_pages_stay_on_the_cpu() -> None:
    p = plan(_inputs(10))
    assert p.choice == "cpu"
    cpu = p.option("cpu")
    assert cpu.seconds == 12  # 300 lines / 25 lines/s
    assert cpu.seconds < p.option("t4").seconds  # the GPU's boot alone is longer


def test_ten_thousand_pages_go_to_the_cheapest_gpu() -> None:
    p = plan(_inputs(10_000))
    assert p.choice in ("t4", "l4")
    assert p.option("cpu").seconds == 12_000  # 3.3 h: far beyond a coffee break
    chosen, other = p.chosen, p.option("l4" if p.choice == "t4" else "t4")
    assert chosen.usd <= other.usd
    # 300,000 lines / 250 lines/s = 1,200 s + 300 s boot on one T4 at 0.21 USD/h
    assert p.option("t4").seconds == 1_500 and p.option("t4").usd == Decimal("0.0875")


def test_instances_ask_for_a_fleet() -> None:
    p = plan(_inputs(10, instances=3))
    assert p.choice in ("t4", "l4") and p.chosen.instances == 3 and p.reason.startswith("--instances 3")


def test_gpu_flag_overrides_the_planner() -> None:
    assert plan(_inputs(10_000, gpu="none")).choice == "cpu"
    assert plan(_inputs(10, gpu="t4")).choice == "t4"
    assert plan(_inputs(10, gpu="l4")).choice == "l4"


def test_a_deadline_adds_instances_and_costs_boot_time() -> None:
    relaxed = plan(_inputs(100_000))
    rushed = plan(_inputs(100_000, deadline_s=1_800))
    assert rushed.chosen.seconds <= 1_800
    assert rushed.chosen.instances > relaxed.chosen.instances
    assert rushed.chosen.usd > relaxed.option(rushed.choice).usd  # more boots to pay for
    impossible = plan(_inputs(100_000, deadline_s=310, max_instances=2))
    assert "no option meets" in impossible.reason


def test_the_coffee_break_is_configurable() -> None:
    assert plan(_inputs(100)).choice == "cpu"  # 120 s
    assert plan(_inputs(100, coffee_break_s=60)).choice != "cpu"


def _pages(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for k in range(n):
        Image.new("L", (200, 40), 255).save(folder / f"line{k:02d}.png")
    return folder


def test_plan_only_json_with_default_throughputs(tmp_path: Path, sqlite_db: str, model: Path) -> None:
    folder = _pages(tmp_path / "scans", 10)
    out = tmp_path / "recognised"
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                      "--out", str(out), "--plan-only", "--no-calibrate", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["choice"] == "cpu" and data["pages"] == 10 and data["lines"] == 10
    assert set(data["options"]) == {"cpu", "t4", "l4"}
    for option in data["options"].values():
        assert option["seconds"] > 0 and Decimal(option["usd"]) >= 0
    assert data["options"]["cpu"]["throughput_source"] == "default"
    forced = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                      "--out", str(out), "--plan-only", "--no-calibrate", "--gpu", "l4",
                                      "--format", "json"])
    assert json.loads(forced.stdout)["choice"] == "l4"
    fleet = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                     "--out", str(out), "--plan-only", "--no-calibrate", "--instances", "2",
                                     "--format", "json"])
    planned = json.loads(fleet.stdout)
    assert planned["choice"] in ("t4", "l4") and planned["instances"] == 2  # --instances asks for a fleet
    assert not out.exists()  # nothing recognised, nothing written


def test_calibration_measures_this_cpu_once(pages: Path, sqlite_db: str, model: Path) -> None:
    args = ["--db", sqlite_db, "infer", str(pages), "--model", str(model), "--plan-only", "--format", "json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "calibrating" in first.stderr
    cpu = json.loads(first.stdout)["options"]["cpu"]
    assert cpu["throughput_source"] == "calibrated" and cpu["lines_per_s"] > 0
    again = CliRunner().invoke(app, args)
    assert "calibrating" not in again.stderr
    assert json.loads(again.stdout)["options"]["cpu"] == {**cpu, "throughput_source": "measured"}


@pytest.mark.parametrize(("extra", "message"), [
    (["--gpu", "a100"], "--gpu 'a100' is unknown"),
    (["--deadline", "soon"], "--deadline 'soon' is not a duration"),
    (["--format", "yaml"], "--format 'yaml' is unknown"),
])
def test_bad_flags_are_one_line(tmp_path: Path, sqlite_db: str, model: Path, extra: list[str],
                                message: str) -> None:
    folder = _pages(tmp_path / "scans", 1)
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model), *extra])
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_missing_model_and_pages_are_one_line(tmp_path: Path, sqlite_db: str, model: Path) -> None:
    folder = _pages(tmp_path / "scans", 1)
    no_model = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", "nope.pt"])
    assert no_model.exit_code == 1 and "model nope.pt does not exist" in no_model.stderr
    no_pages = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(tmp_path / "none"), "--model", str(model)])
    assert no_pages.exit_code == 1 and "does not exist" in no_pages.stderr
    assert no_pages.stderr.strip().count("\n") == 0


def test_a_gpu_without_a_bucket_is_refused_before_anything_is_recorded(tmp_path: Path, sqlite_db: str,
                                                                      model: Path) -> None:
    folder = _pages(tmp_path / "scans", 2)
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                      "--gpu", "t4", "--yes", "--no-calibrate"])
    assert result.exit_code == 1
    assert "a fleet needs [aws] bucket" in result.stderr and "gpuhire init" in result.stderr
    assert not Ledger(open_engine(sqlite_db)).jobs("infer")


@pytest.mark.parametrize(("extra", "message"), [
    (["--gpu", "t4", "--int8"], "--int8 runs on CPUs only"),
    (["--out", "FILE"], "is a file"),
])
def test_refused_before_anything_runs(tmp_path: Path, sqlite_db: str, model: Path, extra: list[str],
                                      message: str) -> None:
    folder = _pages(tmp_path / "scans", 2)
    (tmp_path / "FILE").write_text("not a folder")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                      "--no-calibrate", "--yes", *args])
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]  # the plan may come first; the error is one line
    assert last.startswith("error: ") and message in last
    assert not Ledger(open_engine(sqlite_db)).jobs("infer")


def test_a_model_that_is_no_model_is_one_line(tmp_path: Path, sqlite_db: str) -> None:
    folder = _pages(tmp_path / "scans", 2)
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(bogus),
                                      "--gpu", "none", "--yes"])
    assert result.exit_code == 1 and "unexpected" not in result.stderr
    assert result.stderr.strip().count("\n") == 0  # refused before the plan: one line only
    assert result.stderr.startswith("error: ") and "is not a model this trainer wrote" in result.stderr
    assert not Ledger(open_engine(sqlite_db)).jobs("infer")


def test_pages_that_would_overwrite_each_other_are_refused(tmp_path: Path, sqlite_db: str,
                                                           model: Path) -> None:
    from PIL import Image

    folder = tmp_path / "scans"
    folder.mkdir()
    Image.new("L", (200, 40), 255).save(folder / "a.png")
    Image.new("L", (200, 40), 255).save(folder / "a.jpg")
    result = CliRunner().invoke(app, ["--db", sqlite_db, "infer", str(folder), "--model", str(model),
                                      "--gpu", "none", "--yes"])
    assert result.exit_code == 1 and "would both write a.txt" in result.stderr
