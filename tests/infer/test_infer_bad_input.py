"""`gpuhire infer` given what a hostile new user gives it: each is one line with the fix, no traceback.

A file that is no model (garbage, empty, text, a folder, the trainer's checkpoint), a missing
input, --int8 on a GPU fleet, corrupt images (named by the user's own paths), and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher.cli import app
from ledger.book import Ledger
from ledger.db import open_engine

GIVE = "give --model RUN/model.pt of a finished training run"


def _infer(db: str, inputs: Path | str, model: Path | str, *extra: str) -> object:
    return CliRunner().invoke(app, ["--db", db, "infer", str(inputs), "--model", str(model), *extra])


def _one_line(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "unexpected" not in stderr and "Traceback" not in stderr, stderr
    assert stderr.strip().count("\n") == 0, stderr  # refused before the plan: the error line only
    return stderr.strip()


@pytest.fixture
def bad_models(tmp_path: Path, model: Path) -> dict[str, Path]:
    """Files a user might pass as --model, none of them a model; a run folder with its checkpoint."""
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("my model is in runs/\n")
    (tmp_path / "folder").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(model, run / "model.pt")
    shutil.copy(model.with_name("checkpoint.pt"), run / "checkpoint.pt")
    return {"garbage": tmp_path / "garbage.pt", "empty": tmp_path / "empty.pt", "text": tmp_path / "notes.txt",
            "folder": tmp_path / "folder", "run": run, "checkpoint": run / "checkpoint.pt"}


@pytest.mark.parametrize(("which", "line"), [
    ("garbage", "error: {p} is not a model this trainer wrote (a model.pt from gpuhire train); " + GIVE),
    ("empty", "error: {p} is empty (0 bytes): not a model this trainer wrote (a model.pt from gpuhire train); "
     + GIVE),
    ("text", "error: {p} is neither a gpuhire model (RUN/model.pt from gpuhire train) nor a kraken recognition "
     "model (.mlmodel or .safetensors); " + GIVE + ", or a kraken recognition model"),
    ("folder", "error: --model {p} is a folder; give the model file, RUN/model.pt of a finished training run"),
    ("run", "error: --model {p} is a folder; give the model file: --model {p}/model.pt"),
    ("checkpoint", "error: {p} is a training checkpoint, not a model; use RUN/model.pt: --model {p.parent}/model.pt"),
])
def test_a_file_that_is_no_model_says_what_it_is(synth_pages: Path, bad_models: dict[str, Path], sqlite_db: str,
                                                 tmp_path: Path, which: str, line: str) -> None:
    path = bad_models[which]
    result = _infer(sqlite_db, synth_pages, path, "--gpu", "none", "--yes", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert _one_line(result) == line.format(p=path)
    assert not Ledger(open_engine(sqlite_db)).jobs("infer")
    assert not (tmp_path / "out").exists()


def test_the_loader_knows_the_format_the_trainer_writes() -> None:
    from jobs.htr import checkpoint
    from jobs.htr import model as htr_model

    assert htr_model.MODEL_FORMAT == checkpoint.MODEL_FORMAT


def test_model_dot_is_a_folder_not_missing(synth_pages: Path, sqlite_db: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _infer(sqlite_db, synth_pages, ".", "--gpu", "none", "--yes")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert _one_line(result) == ("error: --model . is a folder; "
                                 "give the model file, RUN/model.pt of a finished training run")


def test_a_missing_input_gives_its_hint_once(model: Path, sqlite_db: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _infer(sqlite_db, "nonexist", model, "--gpu", "none", "--yes")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert _one_line(result) == "error: input nonexist does not exist; check the path (files or directories)"


@pytest.mark.parametrize("gpu", ["t4", "l4"])
def test_int8_on_a_gpu_fleet_is_refused_up_front(synth_pages: Path, model: Path, sqlite_db: str,
                                                 gpu: str) -> None:
    result = _infer(sqlite_db, synth_pages, model, "--gpu", gpu, "--int8", "--plan-only", "--no-calibrate")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert _one_line(result) == (f"error: --int8 runs on CPUs only, not on a --gpu {gpu} fleet; "
                                 "drop --int8, or pass --gpu none")


def test_corrupt_images_are_named_by_the_users_paths(pages: Path, model: Path, sqlite_db: str,
                                                     tmp_path: Path) -> None:
    line = sorted((pages / "lines").glob("*.png"))[3]
    line.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    page_image = sorted((pages / "pages").glob("*.jpg"))[0]
    page_image.write_bytes(b"junk")
    out = tmp_path / "out"
    result = _infer(sqlite_db, pages, model, "--gpu", "none", "--yes", "--out", str(out))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    report = json.loads((out / "dead-letter.json").read_text())["pages"]
    by_key = {entry["page"]: entry for entry in report}
    xml = page_image.with_suffix(".xml")
    assert set(by_key) == {line.relative_to(pages).as_posix(), xml.relative_to(pages).as_posix()}
    assert by_key[line.relative_to(pages).as_posix()]["file"] == str(line)
    assert by_key[xml.relative_to(pages).as_posix()]["file"] == str(xml)
    reason = by_key[line.relative_to(pages).as_posix()]["reason"]
    assert reason.split(":")[0] in ("not-an-image", "corrupt-image") and line.name in reason
    assert str(page_image) in by_key[xml.relative_to(pages).as_posix()]["reason"]
    text = (out / "dead-letter.json").read_text() + result.stdout  # type: ignore[attr-defined]
    assert "gpuhire-infer-" not in text  # no temporary folder, gone by now, is named


def test_ctrl_c_records_the_job_stopped_and_exits_130(synth_pages: Path, model: Path, sqlite_db: str,
                                                      tmp_path: Path) -> None:
    from jobs.htr.pages import list_pages

    many = tmp_path / "many"
    for i in range(20):  # ~800 lines: far more than a CPU recognises before it is stopped
        shutil.copytree(synth_pages, many / f"box{i:02d}")
    out = tmp_path / "out"
    book = Ledger(open_engine(sqlite_db))
    env = {**os.environ, "GPUHIRE_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--db", sqlite_db, "infer", str(many),
                             "--model", str(model), "--gpu", "none", "--yes", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None:  # until the CPU session is open: recognising has begun
            jobs = [j for j in book.jobs("infer") if j.status == "running"]
            if jobs and book.sessions(job_id=jobs[0].id):
                break
            assert time.monotonic() < deadline, "the job did not start within 2 minutes"
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be stopped: give it more pages"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"
    (job,) = [j for j in book.jobs("infer") if j.status != "calibration"]
    assert job.status == "stopped" and job.ended_at is not None
    (session,) = book.sessions(job_id=job.id)
    assert session.session.end_reason == "user" and session.session.end_at is not None
    manifest = out / ".gpuhire" / "manifest.jsonl"
    done = len(manifest.read_text().splitlines()) if manifest.exists() else 0
    assert done < len(list_pages([many]))  # stopped before the end
