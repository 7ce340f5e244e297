"""`gpuhire infer --model X.mlmodel|X.safetensors`: a kraken recognition model on the CPU path
and on the fleet on loopback (moto as S3 and SQS, a worker process here), bad models refused
with one line, and the planner's measured speed kept per model and engine."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import boto3
import pytest
from infer_env import BUCKET, REGION, fleet_config
from kraken_env import tiny_kraken_models
from lxml import etree
from typer.testing import CliRunner

from launcher.cli import app
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job
from ledger.timeutil import utcnow

PAGE_NS = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"


@pytest.fixture(scope="session")
def kraken_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_kraken_models(tmp_path_factory.mktemp("kraken-models"))


def _infer(db: str, pages: Path, model: Path, out: Path, *extra: str, config: Path | None = None) -> object:
    first = ["--config", str(config)] if config else []
    return CliRunner().invoke(app, ["--db", db, *first, "infer", str(pages), "--model", str(model),
                                    "--out", str(out), "--yes", "--format", "json", *extra])


def _check_outputs(pages: Path, out: Path) -> set[str]:
    from jobs.htr.pages import list_pages

    listed = list_pages([pages])
    for page in listed:
        if page.key.endswith(".xml"):
            lines = etree.parse(str(out / page.key)).findall(f".//{PAGE_NS}TextLine")
            assert lines and all(ln.find(f"{PAGE_NS}TextEquiv").get("conf") for ln in lines)
            assert len((out / page.key).with_suffix(".txt").read_text().splitlines()) == len(lines)
        else:
            assert (out / page.key).with_suffix(".txt").exists()
    return {p.key for p in listed}


@pytest.mark.parametrize("fmt", ["mlmodel", "safetensors"])
def test_a_kraken_model_reads_pages_and_lines_on_this_cpu(kraken_models: dict[str, Path], pages: Path,
                                                          tmp_path: Path, sqlite_db: str, fmt: str) -> None:
    out = tmp_path / "out"
    result = _infer(sqlite_db, pages, kraken_models[fmt], out, "--gpu", "none")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    keys = _check_outputs(pages, out)
    assert data["status"] == "done" and data["done"] == len(keys) and not data["dead"]
    job = Ledger(open_engine(sqlite_db)).get_job(data["job"])
    assert job.spec["engine"] == "kraken" and job.spec["model"] == str(kraken_models[fmt])


@pytest.mark.slow
def test_a_kraken_model_travels_to_a_fleet_worker_under_its_suffix(kraken_models: dict[str, Path], pages: Path,
                                                                   moto_server: str, tmp_path: Path,
                                                                   sqlite_db: str) -> None:
    out = tmp_path / "out"
    cfg = fleet_config(tmp_path, batch_pages=50, visibility_s=30, idle_exit_s=5)
    result = _infer(sqlite_db, pages, kraken_models["safetensors"], out, "--gpu", "t4", "--instances", "1",
                    config=cfg)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    keys = _check_outputs(pages, out)
    assert data["status"] == "done" and data["done"] == len(keys) and not data["dead"]
    s3 = boto3.client("s3", region_name=REGION)
    staged = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{data['job']}/model").get(
        "Contents", [])]
    assert staged == [f"jobs/{data['job']}/model.safetensors"]
    from launcher.infer.queue import staged_keys

    assert staged[0] in staged_keys(s3, BUCKET, data["job"])  # `gpuhire gc` finds it


def _bad(tmp_path: Path, kraken_models: dict[str, Path]) -> dict[str, Path]:
    data = kraken_models["mlmodel"].read_bytes()
    (tmp_path / "cut.mlmodel").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.txt").write_text("my model is somewhere else\n")
    return {"segmentation": Path(str(resources.files("kraken").joinpath("blla.mlmodel"))),
            "cut": tmp_path / "cut.mlmodel", "neither": tmp_path / "notes.txt"}


@pytest.mark.parametrize(("which", "line"), [
    ("segmentation", "error: {p} is a kraken segmentation model (layout analysis), not a recognition model; "
     "give a kraken recognition model (from `ketos train` or `gpuhire train --engine kraken`) or RUN/model.pt; "
     "a segmentation model belongs to --segment-model"),
    ("cut", "error: {p} cannot be read as a kraken model (damaged, or not a model: "),
    ("neither", "error: {p} is neither a gpuhire model (RUN/model.pt from gpuhire train) nor a kraken "
     "recognition model (.mlmodel or .safetensors); give --model RUN/model.pt of a finished training run, "
     "or a kraken recognition model"),
])
def test_a_model_that_cannot_recognise_is_one_line(kraken_models: dict[str, Path], synth_pages: Path,
                                                   tmp_path: Path, sqlite_db: str, which: str, line: str) -> None:
    path = _bad(tmp_path, kraken_models)[which]
    result = _infer(sqlite_db, synth_pages, path, tmp_path / "out", "--gpu", "none")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and "\n" not in stderr, stderr
    assert stderr.startswith(line.format(p=path)), stderr
    assert not Ledger(open_engine(sqlite_db)).jobs("infer") and not (tmp_path / "out").exists()


def test_measured_speed_is_the_models_or_its_engines(kraken_models: dict[str, Path], tmp_path: Path,
                                                     sqlite_db: str) -> None:
    from launcher.infer.measure import host_name, measured_cpu_lines_per_s, measured_lines_per_s

    book = Ledger(open_engine(sqlite_db))
    crnn = tmp_path / "run" / "model.pt"

    def job(n: int, device: str, rate: float, model: Path, engine: str | None) -> None:
        spec = {"host": host_name(), "model": str(model), **({"engine": engine} if engine else {})}
        book.create_job(Job(id=f"j{n}", kind="infer", status="done", gpu_model=device, lines_per_s=rate,
                            ended_at=utcnow(), spec=spec))

    job(1, "cpu", 30.0, crnn, None)  # recorded before engines were told apart: gpuhire's
    job(2, "cpu", 2.0, tmp_path / "other.mlmodel", "kraken")
    job(3, "t4", 900.0, crnn, "crnn")
    assert measured_cpu_lines_per_s(book, kraken_models["mlmodel"]) == 2.0  # its engine's
    assert measured_cpu_lines_per_s(book, crnn) == 30.0
    assert measured_lines_per_s(book, "t4", kraken_models["mlmodel"]) is None  # no kraken rate on a T4 yet
    job(4, "cpu", 5.0, kraken_models["mlmodel"], "kraken")
    assert measured_cpu_lines_per_s(book, kraken_models["mlmodel"]) == 5.0  # its own, once measured


def test_int8_with_a_kraken_model_is_refused_up_front(kraken_models: dict[str, Path], synth_pages: Path,
                                                      tmp_path: Path, sqlite_db: str) -> None:
    result = _infer(sqlite_db, synth_pages, kraken_models["mlmodel"], tmp_path / "out", "--gpu", "none", "--int8")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.stderr.strip() == ("error: --int8 quantises gpuhire's own models only, not kraken models; "  # type: ignore[attr-defined]
                                     "drop --int8 for a kraken model")
    assert not Ledger(open_engine(sqlite_db)).jobs("infer")
