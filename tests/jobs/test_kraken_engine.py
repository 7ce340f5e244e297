"""The kraken engine (`python -m jobs.htr train --engine kraken`): kraken 7's own trainer, driven
through its Python API, with gpuhire's ground-truth check, events, signals and model export.

One run is trained once per module (a tiny VGSL spec, 60 synthetic lines, 2 epochs) in a
subprocess, interrupted by SIGTERM mid-epoch and started again; the tests read what it left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import write_digit_pairs

from jobs.htr.__main__ import main
from jobs.htr.events import read_events, validate_event
from jobs.htr.gt import LineSample
from jobs.htr.interrupt import EXIT_INTERRUPTED
from jobs.htr.kraken_config import DEFAULT_SPEC, ConfigError, load_kraken_config
from jobs.htr.kraken_data import compile_kraken, is_kraken_dataset, spec_geometry
from jobs.htr.kraken_train import kraken_problems
from jobs.htr.synth import synth

REPO = Path(__file__).resolve().parents[2]
TINY_SPEC = "[1,32,0,1 Cr3,3,16 Mp2,2 S1(1x0)1,3 Lbx32 Do0.1,2]"
PRESET = f"""[kraken]
spec = "{TINY_SPEC}"
batch_size = 8
lr = 3e-3
epochs = 2
min_epochs = 1
progress_seconds = 0
cpu_threads = 1
"""


@dataclass
class KrakenRun:
    run: Path
    events: Path
    first_rc: int
    second_rc: int
    first_stderr: str
    gt: Path
    dataset: Path


@pytest.fixture(scope="module")
def kraken_gt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kraken-gt") / "gt"
    synth(out, 60, 11)
    return out


@pytest.fixture(scope="module")
def kraken_run(kraken_gt: Path, tmp_path_factory: pytest.TempPathFactory) -> KrakenRun:
    """Compile, train in a subprocess, SIGTERM it after its third step, train again to the end
    (`python -m jobs.htr train` both times)."""
    root = tmp_path_factory.mktemp("kraken-run")
    dataset = root / "ds"
    compile_kraken([kraken_gt], dataset, val_fraction=0.1, seed=0, spec=TINY_SPEC)
    preset = root / "tiny.toml"
    preset.write_text(PRESET, encoding="utf-8")
    run, events = root / "run", root / "events.jsonl"
    cmd = [sys.executable, "-m", "jobs.htr", "train", str(dataset), "--out", str(run), "--engine", "kraken",
           "--preset", str(preset), "--events", str(events), "--job", "kraken-test-job", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if events.exists() and any(e["event"] == "progress" and e["step"] >= 3 for e in read_events(events)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, first_stderr = proc.communicate(timeout=120)
    second_rc = main(cmd[3:])  # the restart: no signal involved, so in this process (kraken is loaded)
    return KrakenRun(run, events, proc.returncode, second_rc, first_stderr, kraken_gt, dataset)


# ---------------------------------------------------------------- ground truth


def _sample(text: str, width: int = 400, height: int = 40, line_id: str = "l1") -> LineSample:
    return LineSample(source=Path("page.xml"), line_id=line_id, index=0, text=text,
                      image=np.full((height, width), 255, np.uint8), image_path=Path("page.png"),
                      format="page", key=f"page.xml#{line_id}")


def test_kraken_problems_names_each_line_kraken_cannot_take() -> None:
    good = _sample("a fine line", line_id="ok")
    empty = _sample("   ", line_id="empty")
    nfd = _sample("cafe\u0301", line_id="nfd")  # kraken's NFC normalisation changes it
    narrow = _sample("a long transcription for a tiny image", width=30, height=40, line_id="narrow")
    problems = kraken_problems([good, empty, nfd, narrow])
    assert len(problems) == 3
    assert "line empty: empty transcription" in problems[0]
    assert "line nfd: kraken's normalisation changes the text" in problems[1]
    assert "line narrow: too narrow" in problems[2] and "pooling of 8" in problems[2]
    assert all("\n" not in p for p in problems)
    assert spec_geometry(DEFAULT_SPEC).reduction == 8 and spec_geometry(DEFAULT_SPEC).height == 120
    assert spec_geometry(TINY_SPEC).reduction == 2


def test_compile_refuses_bad_ground_truth_with_one_line(kraken_gt: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    gt = tmp_path / "gt"
    gt.mkdir()
    pairs = sorted(kraken_gt.glob("**/*.gt.txt"))[:3]
    for p in pairs:
        image = next(p.parent.glob(p.name[: -len(".gt.txt")] + ".png"))
        (gt / image.name).write_bytes(image.read_bytes())
        (gt / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    (gt / pairs[0].name).write_text("x" * 400, encoding="utf-8")  # far more text than the line holds
    out = tmp_path / "ds"
    assert main(["compile", str(gt), "--out", str(out), "--engine", "kraken"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 ground-truth line(s) kraken cannot take")
    assert "too narrow" in err[0] and "fix or remove those lines" in err[0]
    assert not out.exists()


def test_compile_writes_kraken_binary_dataset(kraken_run: KrakenRun) -> None:
    manifest = json.loads((kraken_run.dataset / "manifest.json").read_text(encoding="utf-8"))
    assert is_kraken_dataset(kraken_run.dataset)
    assert manifest["engine"] == "kraken" and manifest["lines"] + manifest["val_lines"] == 60
    assert manifest["val_lines"] == 6 and len(manifest["charset"]) > 20
    import pyarrow as pa  # type: ignore[import-untyped]

    with pa.memory_map(str(kraken_run.dataset / "train.arrow"), "rb") as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.num_rows == manifest["lines"]
    assert json.loads(table.schema.metadata[b"lines"])["type"] == "kraken_recognition_bbox"


def test_a_kraken_preset_rejects_unknown_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[kraken]\nbatchsize = 4\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key.*batchsize"):
        load_kraken_config(bad)
    assert load_kraken_config("kraken", lr=2e-3).lr == 2e-3


# ---------------------------------------------------------------- training, signals, resume


def test_sigterm_checkpoints_once_and_the_rerun_resumes(kraken_run: KrakenRun) -> None:
    assert kraken_run.first_rc == EXIT_INTERRUPTED, kraken_run.first_stderr[-2000:]
    events = read_events(kraken_run.events)
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    assert len(starts) == 2
    first, second = events[: starts[1]], events[starts[1]:]
    assert [e["reason"] for e in first if e["event"] == "checkpoint"] == ["signal"]
    (interrupted,) = [e for e in first if e["event"] == "interrupted"]
    assert interrupted["signal"] == "SIGTERM" and interrupted["step"] >= 3
    assert interrupted["checkpoint"] == str(kraken_run.run / "checkpoints" / "last.ckpt")
    assert second[0]["resumed_from_step"] == interrupted["step"]
    first_step = next(e["step"] for e in second if e["event"] == "progress")
    assert first_step == interrupted["step"] + 1 > 1
    assert second[-1]["event"] == "done" and second[-1]["stopped"] == "epochs"
    assert kraken_run.second_rc == 0


def test_kraken_events_are_schema_valid(kraken_run: KrakenRun) -> None:
    events = read_events(kraken_run.events)
    for e in events:
        assert validate_event(e) == [], e
    kinds = {e["event"] for e in events}
    assert {"start", "progress", "epoch", "checkpoint", "interrupted", "done"} <= kinds
    assert all(e["engine"] == "kraken" and e["precision"] == "fp32" for e in events if e["event"] == "start")
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0 <= e["val_cer"] <= 1 and e["lines_per_s"] > 0 for e in epochs)
    done = events[-1]
    assert done["model"] == str(kraken_run.run / "model.safetensors")
    assert done["models"] == [str(kraken_run.run / "model.safetensors"), str(kraken_run.run / "model.mlmodel")]
    metrics = json.loads((kraken_run.run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["engine"] == "kraken" and metrics["epochs"] == 2 and len(metrics["history"]) == 2


# ---------------------------------------------------------------- models out


@pytest.mark.parametrize("name", ["model.safetensors", "model.mlmodel"])
def test_exported_models_load_in_kraken_and_recognise_a_line(kraken_run: KrakenRun, name: str) -> None:
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.containers import BBoxLine, Segmentation
    from kraken.lib.models import TorchSeqRecognizer
    from kraken.models import load_models
    from kraken.rpred import rpred
    from PIL import Image

    (net,) = load_models(kraken_run.run / name, tasks=["recognition"])
    meta = net.user_metadata["gpuhire"]
    assert meta["job"] == "kraken-test-job" and meta["engine"] == "kraken"
    assert meta["training_lines"] == 54 and meta["best_val_cer"] is not None
    assert len(net.codec.c2l) > 20
    gt_text = sorted(kraken_run.gt.glob("**/*.gt.txt"))[0]
    image = Image.open(gt_text.with_name(gt_text.name.replace(".gt.txt", ".png")))
    seg = Segmentation(type="bbox", imagename="line.png", text_direction="horizontal-lr",
                       lines=[BBoxLine(id="l0", bbox=(0, 0, image.width, image.height))], script_detection=False)
    (record,) = list(rpred(TorchSeqRecognizer(net), image, seg))
    assert isinstance(record.prediction, str)


def test_the_mlmodel_loads_with_kraken_legacy_loader(kraken_run: KrakenRun) -> None:
    """eScriptorium and kraken < 7 load CoreML through load_any."""
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.lib.models import load_any

    assert load_any(str(kraken_run.run / "model.mlmodel")).nn.codec is not None


# ---------------------------------------------------------------- bad models


def test_init_with_a_segmentation_model_or_a_corrupt_file_is_one_line(kraken_run: KrakenRun, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    import kraken

    blla = Path(kraken.__file__).with_name("blla.mlmodel")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a model at all")
    for init, said in ((blla, "holds no kraken recognition model"), (corrupt, "is not a kraken model")):
        rc = main(["train", str(kraken_run.dataset), "--out", str(tmp_path / f"run-{init.stem}"),
                   "--engine", "kraken", "--init", str(init), "--events", str(tmp_path / "ev.jsonl"),
                   "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1 and len(err) == 1 and said in err[0], err


def test_init_fine_tunes_and_adds_new_characters(kraken_run: KrakenRun, tmp_path: Path) -> None:
    """--init: kraken's `union` resize adds the characters the model lacks to codec and output layer."""
    from jobs.htr.events import EventWriter
    from jobs.htr.kraken_train import train_kraken

    gt = write_digit_pairs(tmp_path / "gt", 24, 3)
    for p in sorted(gt.glob("*.gt.txt"))[:6]:
        p.write_text(p.read_text(encoding="utf-8").strip() + "\u20ac", encoding="utf-8")  # the euro sign
    cfg = load_kraken_config(kraken_run.run.parent / "tiny.toml", epochs=1)
    events = EventWriter("fine-tune", tmp_path / "ev.jsonl")
    result = train_kraken(gt, tmp_path / "run", cfg, events=events, init=kraken_run.run / "model.safetensors")
    events.close()
    from kraken.models import load_models

    (before,) = load_models(kraken_run.run / "model.safetensors", tasks=["recognition"])
    (after,) = load_models(result.model, tasks=["recognition"])
    assert "\u20ac" not in before.codec.c2l and "\u20ac" in after.codec.c2l
    assert set(before.codec.c2l) < set(after.codec.c2l)


def test_the_kraken_preset_without_the_kraken_engine_is_one_line(kraken_gt: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(kraken_gt), "--out", str(tmp_path / "run"), "--preset", "kraken"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --preset kraken is the kraken engine's preset; add --engine kraken"]
