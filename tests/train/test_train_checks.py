"""`gpuhire train` refuses what cannot run before anything is rented or written: a run folder
of another job, a file as --out, a preset the trainer lacks, epochs below 1, negative restarts,
ground truth with nothing usable (naming the first bad file); and a dry run leaves nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jobs.htr.config import PRESETS_DIR
from launcher.rundir import RunDir, RunState
from ledger.book import Ledger
from ledger.db import open_engine
from tests.conftest import Cli


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


def _nothing_recorded(db: str) -> None:
    book = Ledger(open_engine(db))
    assert book.sessions() == [] and book.jobs() == []


def _finished_job(folder: Path, job: str = "train-20261101-0900-beef") -> bytes:
    """A run folder as a finished job leaves it; returns its state.json bytes."""
    folder.mkdir(parents=True)
    RunDir(folder).save(RunState(job=job, provider="local", gpu="cpu", data=["gt"], preset="tiny",
                                 epochs=2, max_restarts=0, status="done"))
    (folder / "events.jsonl").write_text(json.dumps({"event": "done", "job": job}) + "\n")
    (folder / "model.pt").write_bytes(b"old model")
    return (folder / "state.json").read_bytes()


def test_a_run_folder_of_another_job_is_refused(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    old = tmp_path / "runs" / "m1"
    state = _finished_job(old)
    for extra in ([], ["--dry-run"]):
        line = _one_error_line(Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--yes",
                                              "--out", str(old), *extra))
        # The job ended (done): `resume` would refuse it, so the advice is another folder only.
        assert line == (f"error: the run folder {old} holds job train-20261101-0900-beef, which ended "
                        "(done); pick another --out (a new or empty folder)")
    assert (old / "state.json").read_bytes() == state and (old / "model.pt").read_bytes() == b"old model"
    assert sorted(p.name for p in old.iterdir()) == ["events.jsonl", "model.pt", "state.json"]
    _nothing_recorded(sqlite_db)


def test_a_file_or_a_damaged_folder_as_out_is_one_line(tiny_gt: Path, tmp_path: Path,
                                                        sqlite_db: str) -> None:
    cli = Cli(sqlite_db)
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    line = _one_error_line(cli("train", str(tiny_gt), "--provider", "local", "--yes", "--out", str(afile)))
    assert line == f"error: the run folder {afile} is a file; pick another --out (a new or empty folder)"
    line = _one_error_line(cli("train", str(tiny_gt), "--provider", "local", "--yes",
                               "--out", str(afile / "sub")))
    assert line.startswith(f"error: cannot create the run folder {afile / 'sub'}") and "--out" in line
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "state.json").write_text("{broken")
    line = _one_error_line(cli("train", str(tiny_gt), "--provider", "local", "--yes", "--out", str(damaged)))
    assert f"the state file {damaged / 'state.json'} is unreadable" in line and "pick another --out" in line
    assert afile.read_text() == "mine" and (damaged / "state.json").read_text() == "{broken"
    _nothing_recorded(sqlite_db)


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "huge"], "error: --preset: 'huge' is not a trainer preset; use one of tiny, small, "
                           "default, large, or the path of a .toml file of your own"),
    (["--preset", "nope.toml"], "error: --preset: no file nope.toml; use one of tiny, small, default, "
                                "large, or the path of a .toml file of your own"),
    (["--epochs", "0"], "error: --epochs 0 trains nothing; give --epochs 1 or more"),
    (["--epochs", "-3"], "error: --epochs -3 trains nothing; give --epochs 1 or more"),
    (["--max-restarts", "-1"], "error: --max-restarts -1 is below 0; give --max-restarts 0 (never "
                               "relaunch) or more"),
], ids=["preset", "preset-file", "epochs-0", "epochs-negative", "restarts"])
def test_training_options_are_checked_first(tiny_gt: Path, tmp_path: Path, sqlite_db: str,
                                            args: list[str], message: str) -> None:
    out = tmp_path / "r"
    for extra in ([], ["--dry-run"]):
        r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--yes", "--out", str(out),
                           *args, *extra)
        assert _one_error_line(r) == message
        assert "quote" not in r.stderr  # refused before compiling or quoting
    assert not out.exists()
    _nothing_recorded(sqlite_db)


def test_preset_from_the_config_and_a_bad_preset_file(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[train]\npreset = "huge"\n')
    line = _one_error_line(Cli(sqlite_db, config)("train", str(tiny_gt), "--provider", "local", "--dry-run"))
    assert line.startswith(f"error: [train] preset in {config}: 'huge' is not a trainer preset; use one of tiny")
    mine = tmp_path / "mine.toml"
    mine.write_text("epochs = 3\nlearning_rate = 1\n")  # the trainer calls it lr
    line = _one_error_line(Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--dry-run",
                                          "--preset", str(mine)))
    assert line.startswith("error: --preset: unknown key(s) in mine.toml: learning_rate; use only: ")
    mine.write_text("epochs = 3\nlstm_hidden = 32\n")
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--dry-run", "--preset", str(mine))
    assert r.exit_code == 0, r.stderr


def test_ground_truth_without_images_names_the_first_bad_file(tiny_gt: Path, tmp_path: Path,
                                                               sqlite_db: str) -> None:
    noimg = tmp_path / "bad" / "noimg"
    noimg.mkdir(parents=True)
    for xml in sorted((tiny_gt / "pages").glob("*.xml"))[:2]:
        shutil.copy(xml, noimg)  # the XML without its page image
    out = tmp_path / "r"
    for extra in (["--dry-run"], ["--yes", "--out", str(out)]):
        line = _one_error_line(Cli(sqlite_db)("train", str(noimg), "--provider", "local", *extra))
        first = sorted(noimg.glob("*.xml"))[0]
        assert line.startswith(f"error: ground truth unusable: no usable line in {noimg} (")
        assert f"first: {first} line " in line and ": missing-image, the image the line refers to " \
            f"does not exist ({first.with_suffix('.jpg').name})" in line
        assert line.endswith("fix those files (images next to the XML, non-empty transcriptions) "
                             "and run again; nothing was rented")
        assert "above" not in line  # nothing is listed above it
    assert not out.exists()  # the folder the failed run made is gone again
    _nothing_recorded(sqlite_db)


def test_a_dry_run_leaves_nothing_behind(tiny_gt: Path, tmp_path: Path, sqlite_db: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    for extra in ([], ["--out", str(tmp_path / "out" / "r1")]):
        r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--dry-run",
                           *extra)  # tiny: the quote's calibration is seconds, not half a minute
        assert r.exit_code == 0, r.stderr
        assert "dry run: nothing rented, nothing written" in r.stderr
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists()
    assert list(temp.iterdir()) == []  # the temporary dataset is gone too
    _nothing_recorded(sqlite_db)


def test_a_refused_quote_removes_the_folder_it_made(tiny_gt: Path, tmp_path: Path, sqlite_db: str) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for out in (tmp_path / "new", keep):
        r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", "tiny", "--yes",
                           "--max-usd", "0.000001", "--out", str(out))
        assert "above --max-usd" in _one_error_line(r)
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt"]  # only what it compiled went
    _nothing_recorded(sqlite_db)


@pytest.mark.slow
def test_a_preset_file_of_your_own_travels_with_the_data(tiny_gt: Path, tmp_path: Path,
                                                         sqlite_db: str) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text((PRESETS_DIR / "tiny.toml").read_text())
    run = tmp_path / "runs" / "own"
    r = Cli(sqlite_db)("train", str(tiny_gt), "--provider", "local", "--preset", str(mine),
                       "--epochs", "1", "--yes", "--out", str(run))
    assert r.exit_code == 0, r.stderr
    assert ": done" in r.stdout and (run / "model.pt").exists()
    assert (run / "dataset" / "preset.toml").read_text() == mine.read_text()
    assert json.loads((run / "state.json").read_text())["preset"] == "dataset/preset.toml"
    (job,) = Ledger(open_engine(sqlite_db)).jobs()
    assert job.spec["preset"] == str(mine) and job.status == "done"
