"""`gpuhire train --engine crnn|kraken` before anything is rented: the options checked in one
line, the quote per engine (measured kraken throughput never mixed with the CRNN's; jobs
recorded before kraken are CRNN jobs), the trainer's flags on every attempt, and the model
files a kraken run brings home."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from launcher.errors import InputError
from launcher.rundir import RunDir, RunState
from launcher.train.engine import (
    check_engine,
    check_kraken_spec,
    checked_kraken_preset,
    kraken_model_size,
    model_files,
    preset_epochs,
)
from launcher.train.flow import trainer_args
from launcher.train.ground_truth import kraken_dataset_lines
from launcher.train.quote import (
    DEFAULT_KRAKEN_LINES_PER_S,
    DEFAULT_TRAIN_LINES_PER_S,
    engine_of,
    job_throughput,
    quote,
)
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job
from tests.conftest import Cli

SPEC = "[1,48,0,1 Cr3,3,16 Mp2,2 Lbx32 Do]"


@pytest.fixture
def book(tmp_path: Path) -> Ledger:
    return Ledger(open_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))


def _job(book: Ledger, name: str, size: str, rate: float, engine: str | None, gpu: str = "t4") -> None:
    spec = {} if engine is None else {"engine": engine}  # jobs from before kraken have none
    book.create_job(Job(id=name, kind="train", gpu_model=gpu, model_size=size, device="cuda",
                        lines_per_s=rate, spec=spec, status="done"))


# -- the quote per engine ------------------------------------------------------------------
def test_kraken_quotes_from_its_documented_default_until_a_kraken_job_is_measured(book: Ledger) -> None:
    rate = job_throughput(book, "l4", "kraken", engine="kraken")
    assert rate.lines_per_s == DEFAULT_KRAKEN_LINES_PER_S["l4"]
    assert rate.source == "kraken default, an estimate"  # nothing measured on a GPU: it says so
    cpu = job_throughput(book, "cpu", "kraken", engine="kraken", calibrate=lambda: None)
    assert cpu.lines_per_s == 2.5 and cpu.source == "default"  # 2-3 lines/s per core (issue 16)
    assert DEFAULT_TRAIN_LINES_PER_S["cpu"] == 2.0  # the CRNN's own default is another table
    # [train.lines_per_s] holds the CRNN's figures: a kraken quote is not priced at them
    assert job_throughput(book, "l4", "kraken", engine="kraken", overrides={"l4": 9.0}).source \
        == "kraken default, an estimate"
    assert job_throughput(book, "l4", "default", overrides={"l4": 9.0}).lines_per_s == 9.0


def test_measured_throughput_is_per_engine(book: Ledger) -> None:
    _job(book, "old", "kraken", 100.0, None)  # no engine in its spec: a CRNN job (a preset file
    _job(book, "crnn", "kraken", 90.0, "crnn")  # named kraken.toml, say), never kraken's figure
    assert engine_of(book.get_job("old")) == "crnn"
    assert job_throughput(book, "t4", "kraken", engine="kraken").source == "kraken default, an estimate"
    _job(book, "k1", "kraken", 12.0, "kraken")
    _job(book, "k2", "kraken", 14.0, "kraken")
    _job(book, "k3", "kraken", 30.0, "kraken", gpu="l4")  # another GPU type
    kraken = job_throughput(book, "t4", "kraken", engine="kraken")
    assert (kraken.lines_per_s, kraken.source) == (14.0, "measured, median of 2 job(s)")
    crnn = job_throughput(book, "t4", "kraken")  # the CRNN never sees the kraken jobs
    assert (crnn.lines_per_s, crnn.source) == (100.0, "measured, median of 2 job(s)")
    # a kraken spec of the user's own is another size: the default again
    size = kraken_model_size("kraken", SPEC)
    assert size.startswith("kraken spec ") and size != "kraken"
    assert job_throughput(book, "t4", size, engine="kraken").source == "kraken default, an estimate"


def test_the_quote_names_its_engine() -> None:
    q = quote(gpu="t4", lines=1000, epochs=10, usd_per_hour=Decimal("0.20"), overhead_s=300,
              size="kraken", engine="kraken")
    assert q.seconds == int(1000 * 10 / DEFAULT_KRAKEN_LINES_PER_S["t4"]) + 300
    assert q.to_dict()["engine"] == "kraken" and "(kraken on t4, kraken default, an estimate)" in q.describe()
    assert quote(gpu="t4", lines=1, epochs=1, usd_per_hour=Decimal(1)).to_dict()["engine"] == "crnn"


def test_kraken_model_size_follows_the_spec_not_its_spacing(tmp_path: Path) -> None:
    assert kraken_model_size("kraken", None) == "kraken"
    assert kraken_model_size("kraken", SPEC) == kraken_model_size("kraken", SPEC.replace(" ", "  "))
    preset = tmp_path / "k.toml"
    preset.write_text(f'[kraken]\nspec = "{SPEC}"\nepochs = 7\n')
    assert kraken_model_size(str(preset), None) == kraken_model_size("kraken", SPEC)
    assert preset_epochs(str(preset), "kraken") == 7 and preset_epochs(str(preset), "crnn") is None


# -- the options ---------------------------------------------------------------------------
def test_engine_and_spec_checks() -> None:
    assert check_engine("Kraken") == "kraken" and check_engine("crnn") == "crnn"
    with pytest.raises(InputError, match="'ketos' is not a training engine") as exc:
        check_engine("ketos")
    assert exc.value.fix == "use --engine crnn or kraken"
    assert check_kraken_spec(f"  {SPEC} ") == SPEC
    for bad in ("1,48,0,1 Cr3,3,16", "[]", "[1,48\n0,1]", "[" + "x" * 3000 + "]"):
        with pytest.raises(InputError):
            check_kraken_spec(bad)


def test_kraken_presets(tmp_path: Path) -> None:
    assert checked_kraken_preset(None, "--preset") == "kraken" == checked_kraken_preset("kraken", "--preset")
    with pytest.raises(InputError, match="'small' is a preset of the crnn engine"):
        checked_kraken_preset("small", "--preset")
    with pytest.raises(InputError, match="no file"):
        checked_kraken_preset(str(tmp_path / "none.toml"), "--preset")
    crnn_only = tmp_path / "crnn.toml"
    crnn_only.write_text("epochs = 3\n")
    with pytest.raises(InputError, match=r"has no \[kraken\] table"):
        checked_kraken_preset(str(crnn_only), "--preset")
    bad_spec = tmp_path / "bad.toml"
    bad_spec.write_text('[kraken]\nspec = "Cr3,3,16"\n')
    with pytest.raises(InputError, match="is not a VGSL spec"):
        checked_kraken_preset(str(bad_spec), "--preset")


@pytest.mark.parametrize(("args", "line"), [
    (["--engine", "ketos"], "error: --engine 'ketos' is not a training engine; use --engine crnn or kraken"),
    (["--kraken-spec", SPEC], "error: --kraken-spec is for --engine kraken; add --engine kraken, "
                              "or leave --kraken-spec out"),
    (["--engine", "kraken", "--preset", "tiny"], "error: --preset: 'tiny' is a preset of the crnn engine; "
                                                 "use --preset kraken, or the path of a .toml file with "
                                                 "a [kraken] table (docs/trainer.md)"),
    (["--engine", "kraken", "--kraken-spec", "Lbx200"], "error: --kraken-spec 'Lbx200' is not a VGSL spec; "
                                                        "write it in brackets, e.g. --kraken-spec "
                                                        "'[1,120,0,1 Cr3,13,32 Mp2,2 Lbx200 Do]' (see "
                                                        "kraken's VGSL docs)"),
    (["--engine", "kraken", "--gpus", "4"], "error: --engine kraken trains on one GPU, not --gpus 4; "
                                            "pass --gpus 1 (or use --engine crnn for several GPUs)"),
])
def test_bad_options_are_one_line_before_anything(args: list[str], line: str, tmp_path: Path,
                                                  sqlite_db: str) -> None:
    r = Cli(sqlite_db)("train", str(tmp_path / "gt"), "--provider", "local", "--dry-run", *args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stderr.strip() == line
    assert not (tmp_path / "runs").exists()


def test_config_engine_is_checked_and_used(tmp_path: Path, sqlite_db: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[train]\nengine = "ketos"\n')
    r = Cli(sqlite_db, config)("train", str(tmp_path / "gt"), "--provider", "local", "--dry-run")
    assert r.exit_code != 0 and "[train] engine = 'ketos': use crnn or kraken" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    config.write_text('[train]\nengine = "kraken"\nkraken_spec = "no brackets"\n')
    r = Cli(sqlite_db, config)("train", str(tmp_path / "gt"), "--provider", "local", "--dry-run")
    assert r.exit_code == 2 and "[train] kraken_spec in " in r.stderr and "is not a VGSL spec" in r.stderr


# -- on the box and back home --------------------------------------------------------------
def test_trainer_args_carry_the_engine_on_every_attempt(tmp_path: Path) -> None:
    state = RunState(job="j", provider="local", gpu="cpu", data=["gt"], preset="kraken", epochs=3,
                     max_restarts=1, engine="kraken", kraken_spec=SPEC, attempt=1)
    args = trainer_args(state)
    assert args[:2] == ["train", "dataset"]
    assert args[-4:] == ["--engine", "kraken", "--kraken-spec", SPEC]
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.save(state)  # what `gpuhire resume` reads back: the same flags again
    assert trainer_args(run.load()) == args
    crnn = RunState(job="j", provider="local", gpu="cpu", data=["gt"], preset="tiny", epochs=3, max_restarts=1)
    assert "--engine" not in trainer_args(crnn)
    raw = json.loads((run.path / "state.json").read_text())
    del raw["engine"], raw["kraken_spec"]  # a state file from before kraken: a CRNN job
    (run.path / "state.json").write_text(json.dumps(raw))
    assert run.load().engine == "crnn"


def test_model_files_per_engine_and_kraken_datasets(tmp_path: Path) -> None:
    assert model_files("kraken") == ("model.safetensors", "model.mlmodel")
    assert model_files("crnn") == ("model.pt",)
    run = RunDir(tmp_path)
    (tmp_path / "model.mlmodel").write_bytes(b"x")
    assert run.models(model_files("kraken")) == [tmp_path / "model.mlmodel"]
    ds = tmp_path / "ds"
    ds.mkdir()
    assert kraken_dataset_lines(ds) is None
    (ds / "manifest.json").write_text(json.dumps({"engine": "kraken", "lines": 54, "val_lines": 6}))
    assert kraken_dataset_lines(ds) == 54
    (ds / "manifest.json").write_text(json.dumps({"engine": "crnn", "lines": 54}))
    assert kraken_dataset_lines(ds) is None


def test_a_dataset_compiled_for_the_other_engine_is_refused(tmp_path: Path, sqlite_db: str) -> None:
    from jobs.htr.dataset import compile_dataset
    from jobs.htr.synth import synth

    kraken_ds = tmp_path / "kraken-ds"
    kraken_ds.mkdir()
    (kraken_ds / "manifest.json").write_text(json.dumps({"engine": "kraken", "lines": 3}))
    r = Cli(sqlite_db)("train", str(kraken_ds), "--provider", "local", "--dry-run")
    assert r.exit_code != 0
    assert r.stderr.strip() == (f"error: {kraken_ds} is a dataset compiled for the kraken engine; "
                                "train it with --engine kraken, or give the ground truth itself")
    synth(tmp_path / "gt", 4, seed=1)
    compile_dataset([tmp_path / "gt"], tmp_path / "crnn-ds")
    r = Cli(sqlite_db)("train", str(tmp_path / "crnn-ds"), "--engine", "kraken", "--provider", "local",
                       "--dry-run")
    assert r.exit_code != 0
    assert r.stderr.strip().startswith(f"error: {tmp_path / 'crnn-ds'} is a dataset compiled for the crnn engine; ")


def test_resume_keeps_a_kraken_job_on_one_gpu(tmp_path: Path, sqlite_db: str) -> None:
    run = RunDir(tmp_path / "runs" / "job-k")
    run.path.mkdir(parents=True)
    run.save(RunState(job="job-k", provider="local", gpu="cpu", data=["gt"], preset="kraken", epochs=3,
                      max_restarts=1, engine="kraken", status="stopped"))
    r = Cli(sqlite_db)("resume", "job-k", "--runs", str(tmp_path / "runs"), "--gpus", "4")
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == ("error: job job-k trains with --engine kraken, on one GPU, not --gpus 4; "
                                "leave --gpus out (or give --gpus 1)")
