"""`gpuhire train --engine kraken` end to end on the local provider, through the real CLI and
kraken's real trainer: a tiny network (a preset file's [kraken] table) for one epoch on 60
synthetic lines. The ground truth is checked and compiled once into kraken's binary dataset,
the ledger records the engine, the model files come home and are named, and the next quote of
the same network is the measured one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.htr.synth import synth
from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli

pytestmark = pytest.mark.slow

# kraken's default network shape (conv, pool, summarise height, BiLSTM), a fraction of its size
TINY_SPEC = "[1,32,0,1 Cr3,3,16 Mp2,2 Cr3,3,16 Mp2,2 S1(1x0)1,3 Lbx32 Do]"


@pytest.fixture(scope="module")
def kraken_gt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kraken-gt") / "gt"
    synth(out, 60, seed=3)
    return out


def _preset(folder: Path) -> Path:
    preset = folder / "tiny-kraken.toml"
    preset.write_text(f'[kraken]\nspec = "{TINY_SPEC}"\nepochs = 1\nbatch_size = 8\nmin_epochs = 1\n')
    return preset


def test_kraken_job_end_to_end_on_the_local_provider(kraken_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    run = tmp_path / "runs" / "job"
    preset = _preset(tmp_path)
    r = Cli(sqlite_db)("train", str(kraken_gt), "--engine", "kraken", "--preset", str(preset),
                       "--provider", "local", "--yes", "--out", str(run), "--format", "json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["status"], out["engine"], out["epochs"]) == ("done", "kraken", 1), out
    assert out["models"] == [str(run / "model.safetensors"), str(run / "model.mlmodel")]
    assert all(Path(m).stat().st_size > 1000 for m in out["models"])
    assert out["quote"]["engine"] == "kraken" and out["quote"]["model_size"].startswith("kraken spec ")
    assert out["quote"]["throughput_source"] == "default"  # no calibration for kraken
    assert "54 usable lines, kraken engine, local / cpu" in r.stderr  # 60 lines, 6 for validation
    # compiled once, into kraken's binary dataset: that folder is what the box got
    manifest = json.loads((run / "dataset" / "manifest.json").read_text())
    assert manifest["engine"] == "kraken" and manifest["lines"] == 54
    assert (run / "dataset" / "train.arrow").is_file() and (run / "dataset" / "preset.toml").is_file()
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    assert events[0]["event"] == "start" and events[0].get("engine") == "kraken"
    assert events[-1]["event"] == "done"
    state = json.loads((run / "state.json").read_text())
    assert (state["engine"], state["status"]) == ("kraken", "done")

    book = Ledger(open_engine(sqlite_db))
    job = book.get_job(out["job"])
    assert job.status == "done" and job.spec["engine"] == "kraken" and job.lines_per_s > 0
    assert job.model_size == out["quote"]["model_size"] and job.best_cer is not None

    # the same network's next quote is this job's measured throughput (kraken's default network
    # is another size, and the CRNN never counts kraken's jobs: tests/train/test_kraken_engine.py)
    again = Cli(sqlite_db)("train", str(kraken_gt), "--engine", "kraken", "--preset", str(preset),
                           "--provider", "local", "--dry-run", "--format", "json", "--out", str(tmp_path / "b"))
    assert again.exit_code == 0, again.stderr
    q = json.loads(again.stdout)["quote"]
    assert q["throughput_source"] == "measured, median of 1 job(s)"
    assert q["lines_per_s"] == pytest.approx(job.lines_per_s, rel=1e-3)


def test_ground_truth_kraken_cannot_take_stops_before_renting(tmp_path: Path, sqlite_db: str) -> None:
    gt = tmp_path / "gt"
    synth(gt, 4, seed=5)
    pairs = sorted(gt.rglob("*.gt.txt"))
    assert pairs, "synth writes image + .gt.txt pairs"
    pairs[0].write_text("x" * 400)  # far more characters than the line image has frames for
    r = Cli(sqlite_db)("train", str(pairs[0].parent), "--engine", "kraken", "--provider", "local",
                       "--yes", "--out", str(tmp_path / "run"))
    assert r.exit_code != 0
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ground truth kraken cannot train on (1 problem(s)): "), line
    assert line.endswith("; fix or leave out those lines; nothing was rented"), line
    assert Ledger(open_engine(sqlite_db)).sessions() == []
    assert not (tmp_path / "run").exists()
