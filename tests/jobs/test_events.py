"""The event stream: every event a real run writes validates against the versioned schema; the
validator catches what is wrong; a corrupt sample in the ground truth does not stop a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, write_digit_pairs

from jobs.htr.config import load_config
from jobs.htr.events import EVENTS, SCHEMA_VERSION, EventWriter, load_schema, read_events, validate_event
from jobs.htr.train import train


@pytest.mark.slow
def test_a_real_run_writes_only_valid_events(learned_run: Path) -> None:
    events = read_events(learned_run / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert {"start", "epoch", "checkpoint", "done"} <= set(kinds)
    for e in events:
        assert validate_event(e) == [], e
        assert e["job"] == "learned" and e["schema"] == SCHEMA_VERSION and e["time"].endswith("Z")
    epoch = next(e for e in events if e["event"] == "epoch")
    assert 0 <= epoch["data_wait_fraction"] <= 1 and epoch["lines_per_s"] > 0
    assert epoch["gpu_util"] is None and epoch["gpu_mem_gb"] is None  # no GPU here
    done = events[-1]
    assert done["model"].endswith("model.pt") and Path(done["model"]).exists()


def test_validator_catches_bad_events() -> None:
    good = {"event": "error", "time": "2026-11-22T10:00:00.000Z", "job": "j", "schema": 1, "message": "x"}
    assert validate_event(good) == []
    assert validate_event({**good, "message": ""})
    assert validate_event({k: v for k, v in good.items() if k != "job"})
    assert validate_event({**good, "event": "exploded"})
    assert validate_event({**good, "time": "yesterday"})
    epoch = {**good, "event": "epoch", "epoch": 1, "step": 3, "train_loss": 1.0, "val_cer": 0.5, "val_wer": 0.9,
             "lines_per_s": 10.0, "data_wait_fraction": 0.02, "gpu_util": None, "gpu_mem_gb": None, "seconds": 2.0}
    assert validate_event(epoch) == []
    assert validate_event({**epoch, "data_wait_fraction": 1.5})
    assert validate_event({k: v for k, v in epoch.items() if k != "val_cer"})
    assert set(load_schema()["properties"]["event"]["enum"]) == set(EVENTS)


def test_writer_appends_json_lines_with_the_common_fields(tmp_path: Path) -> None:
    writer = EventWriter("job-1", tmp_path / "e.jsonl")
    writer.emit("error", message="boom")
    writer.emit("error", message="again")
    writer.close()
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    assert [json.loads(x)["message"] for x in lines] == ["boom", "again"]
    with pytest.raises(ValueError):
        writer.emit("nonsense")
    quiet = EventWriter("j", tmp_path / "q.jsonl", enabled=False)
    quiet.emit("error", message="x")
    assert not (tmp_path / "q.jsonl").exists()


@pytest.mark.slow
def test_corrupt_samples_do_not_stop_the_run(tmp_path: Path) -> None:
    gt = write_digit_pairs(tmp_path / "gt", 40, 2)
    shutil.copy(FIXTURES / "bad" / "broken.xml", gt / "broken.xml")
    shutil.copy(FIXTURES / "bad" / "garbage.png", gt / "garbage.png")
    (gt / "garbage.gt.txt").write_text("123\n")
    (gt / "l0001.gt.txt").write_text("   \n")  # empty transcription
    result = train(gt, tmp_path / "run", load_config("tiny", epochs=1),
                   events=EventWriter("bad", tmp_path / "ev.jsonl"))
    assert result.stopped == "epochs" and result.model.exists()
    report = json.loads((tmp_path / "run" / "dataset" / "report.json").read_text())
    assert report["lines"] == 39 and report["skipped_total"] == 3
    events = read_events(tmp_path / "ev.jsonl")
    assert events[0]["lines"] + events[0]["val_lines"] == 39
    assert all(validate_event(e) == [] for e in events)


def test_with_a_file_the_log_gets_a_readable_line_per_event_that_matters(tmp_path: Path) -> None:
    import io

    log = io.StringIO()
    writer = EventWriter("job-1", tmp_path / "events.jsonl", log=log)
    writer.emit("start", device="cpu", precision="fp32", lines=100, epochs=2)
    writer.emit("progress", epoch=1, step=3, lines_per_s=12.5)
    writer.emit("epoch", epoch=1, val_cer=0.5, lines_per_s=30.2, channels=[1, 2])
    writer.emit("done", best_val_cer=0.4, model="run/model.pt")
    writer.close()
    lines = log.getvalue().splitlines()
    assert [line.split(" ", 2)[1] for line in lines] == ["start:", "epoch:", "done:"]  # no progress
    assert lines[0].endswith("start: device cpu, precision fp32, lines 100, epochs 2")
    assert lines[1].endswith("epoch: epoch 1, val_cer 0.5, lines_per_s 30.2")  # lists left out
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 4  # every event in the file
    stdout_only = EventWriter("job-2")  # events on stdout: nothing extra on stderr
    assert stdout_only.log is None
