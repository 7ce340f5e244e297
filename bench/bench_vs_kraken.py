"""Benchmark: gpuhire's CRNN engine against kraken's default recognition model, side by side.

Both engines train on the same synthetic lines with the same explicit train/validation split
(seeded, written as split files), each through its own training entry point, in its own child
process started at the same moment:

- crnn:   `jobs.htr.train.train` on the compiled dataset (one child per --preset);
- kraken: kraken 7's Python training API (`KrakenTrainer` + `VGSLRecognitionModel`, the default
          VGSL spec of `ketos train`, batch size 1, AdamW 1e-3 constant: kraken's defaults) on
          kraken's binary (arrow) dataset built from the same line crops.

On a CPU each child is pinned to a core of its own (os.sched_setaffinity) with one torch
thread and no loader workers; on a GPU (--device cuda) the engines run one after the other,
each with the whole card and the same budget. Each child stops at --budget-minutes.

Reported per engine: training lines/s (validation excluded), peak RSS of the child, the wall
time from the child's start (imports included, compile not) to the first validation at or
under 10 %, 5 % and 2 % CER, and the best CER within the budget. The CRNN engine validates at
each epoch's end; kraken, whose epochs are long at batch size 1, every --kraken-val-lines
training lines (a quarter epoch by default), so its times are not held back by its epochs.

    python bench/bench_vs_kraken.py [--lines 2000] [--budget-minutes 10] [--presets small]
        [--cores 0,1] [--device cpu|cuda] [--workdir DIR]

The figures in docs/trainer.md come from `--lines 2000 --budget-minutes 20 --presets small
--cores 1,0`. kraken is driven here through its own API rather than jobs/htr/kraken_train.py
(gpuhire's kraken engine, the same kraken defaults) so that it can validate more often than
once an epoch: at batch size 1 kraken's first epoch of 1,800 lines takes ten minutes on a core.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

THRESHOLDS = (0.10, 0.05, 0.02)

CRNN_CHILD = r"""
import json, sys, time
from pathlib import Path
ds, run, preset, device, epochs = sys.argv[1:6]
import torch
torch.set_num_threads(1)
from jobs.htr.config import load_config
from jobs.htr.events import EventWriter
from jobs.htr.model import count_parameters
from jobs.htr.train import train
over = {"epochs": int(epochs)} if int(epochs) > 0 else {}
cfg = load_config(preset, cpu_threads=1, workers=0 if device == "cpu" else -1, patience=10_000,
                  min_epochs=10_000, checkpoint_minutes=10_000.0, **over)
train(Path(ds), Path(run), cfg, events=EventWriter("bench", Path(run) / "events.jsonl"), device=device)
"""

KRAKEN_CHILD = r"""
import json, sys, time, warnings
from pathlib import Path
warnings.filterwarnings("ignore", message=".*no logger configured.*")
train_arrow, val_arrow, work, out, device, batch, val_lines, t0 = sys.argv[1:9]
batch, val_lines, t0 = int(batch), int(val_lines), float(t0)
import torch
torch.set_num_threads(1)
from jobs.htr.kraken_compat import load_kraken
load_kraken()
import lightning as L
from kraken.configs import VGSLRecognitionTrainingConfig, VGSLRecognitionTrainingDataConfig
from kraken.train import KrakenTrainer, VGSLRecognitionDataModule, VGSLRecognitionModel

records = open(out, "a", encoding="utf-8")

class Recorder(L.Callback):
    lines = 0
    val_s = 0.0
    started = None
    val_started = None
    def on_train_start(self, trainer, module):
        self.started = time.time()
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        records.write(json.dumps({"kind": "start", "t": time.time() - t0, "parameters": params}) + "\n")
        records.flush()
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.lines += int(batch["image"].shape[0])
    def on_validation_start(self, trainer, module):
        self.val_started = time.time()
    def on_validation_end(self, trainer, module):
        if trainer.sanity_checking or "val_accuracy" not in trainer.callback_metrics:
            return
        now = time.time()
        self.val_s += now - self.val_started
        train_s = now - self.started - self.val_s
        cer = 1.0 - float(trainer.callback_metrics["val_accuracy"])
        row = {"kind": "val", "t": now - t0, "cer": round(cer, 5), "lines": self.lines,
               "epoch": trainer.current_epoch, "lines_per_s": self.lines / max(train_s, 1e-9)}
        records.write(json.dumps(row) + "\n")
        records.flush()

data_cfg = VGSLRecognitionTrainingDataConfig(training_data=[train_arrow], evaluation_data=[val_arrow],
                                             format_type="binary", num_workers=0 if device == "cpu" else 4,
                                             batch_size=batch)
model_cfg = VGSLRecognitionTrainingConfig(epochs=10_000, quit="fixed", batch_size=batch,
                                          checkpoint_path=str(Path(work) / "checkpoints"))
precision = "32" if device == "cpu" else ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed")
trainer = KrakenTrainer(accelerator=device, devices=1, precision=precision, max_epochs=10_000, min_epochs=0,
                        enable_progress_bar=False, enable_summary=False, num_sanity_val_steps=0,
                        val_check_interval=max(1, val_lines // batch), callbacks=[Recorder()])
trainer.fit(VGSLRecognitionModel(model_cfg), VGSLRecognitionDataModule(data_cfg))
"""


def prepare(work: Path, lines: int, seed: int, heights: set[int]) -> dict[str, Any]:
    """Synthetic ground truth, one seeded split as split files, the CRNN datasets (one per
    height) and kraken's arrow files, all from the same line crops."""
    from jobs.htr.dataset import CompiledDataset, compile_dataset
    from jobs.htr.gt import GtReport, iter_samples
    from jobs.htr.split import seeded_split
    from jobs.htr.synth import synth

    gt = work / "gt"
    if not gt.exists():
        synth(gt, lines, seed)
    samples = list(iter_samples([gt], report=GtReport()))
    train_ids, val_ids = seeded_split([s.key for s in samples], 0.1, seed)
    split = work / "split"
    split.mkdir(exist_ok=True)
    for name, ids in (("train", train_ids), ("val", val_ids)):
        (split / f"{name}.txt").write_text("".join(samples[i].key + "\n" for i in ids), encoding="utf-8")
    datasets = {}
    for height in sorted(heights):
        ds = work / f"crnn{height}"
        if not ds.exists():
            compile_dataset([gt], ds, height=height, split_files=(split / "train.txt", split / "val.txt"))
        datasets[height] = ds
        data = CompiledDataset(ds)
        assert (len(data.train_ids), len(data.val_ids)) == (len(train_ids), len(val_ids))
    arrows = {}
    for name, ids in (("train", train_ids), ("val", val_ids)):
        arrow = work / "kraken" / f"{name}.arrow"
        arrows[name] = arrow
        if not arrow.exists():
            arrows[name] = _arrow(samples, ids, work / "kraken" / name, arrow)
    return {"datasets": datasets, "arrows": arrows, "train_lines": len(train_ids), "val_lines": len(val_ids)}


def _arrow(samples: list[Any], ids: list[int], pairs: Path, arrow: Path) -> Path:
    """kraken's binary dataset of these samples (written as image + .gt.txt pairs first)."""
    from PIL import Image

    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.lib.arrow_dataset import build_binary_dataset

    pairs.mkdir(parents=True, exist_ok=True)
    files = []
    for i in ids:
        png = pairs / f"{i:06d}.png"
        Image.fromarray(samples[i].image).save(png)
        png.with_suffix(".gt.txt").write_text(samples[i].text, encoding="utf-8")
        files.append(str(png))
    build_binary_dataset(files, str(arrow), format_type="path")
    return arrow


def _pin(core: int | None) -> Any:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})
    return pin


def start_child(code: str, args: list[str], core: int | None, log: Path) -> subprocess.Popen[bytes]:
    """The child runs in the work folder (whatever an engine writes relative to its working
    directory lands there, not in the repository), with the repository on its path."""
    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=path)
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=log.parent, env=env, preexec_fn=_pin(core),  # noqa: PLW1509
                                start_new_session=True)


def supervise(children: dict[str, subprocess.Popen[bytes]], deadline: float) -> dict[str, dict[str, Any]]:
    """Wait for the children; at the deadline SIGTERM them (SIGKILL 60 s later). Their peak RSS
    (wait4's ru_maxrss: the child and the descendants it waited for) and exit status."""
    ended: dict[str, dict[str, Any]] = {}
    termed = killed = False
    while len(ended) < len(children):
        for name, proc in children.items():
            if name in ended:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                ended[name] = {"peak_mb": usage.ru_maxrss / 1024, "status": os.waitstatus_to_exitcode(status)}
        now = time.time()
        for name, proc in children.items():
            if name in ended:
                continue
            if now >= deadline and not termed:
                os.killpg(proc.pid, signal.SIGTERM)
            elif now >= deadline + 60 and not killed:
                os.killpg(proc.pid, signal.SIGKILL)
        termed, killed = termed or now >= deadline, killed or now >= deadline + 60
        time.sleep(0.5)
    return ended


def crnn_records(run: Path, t0: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The CRNN run's validations (t from the child's start) and its `start` event."""
    path = run / "events.jsonl"
    events = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def at(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - t0
    vals = [{"t": at(e), "cer": e["val_cer"], "epoch": e["epoch"], "lines_per_s": e["lines_per_s"],
             "data_wait_fraction": e["data_wait_fraction"]} for e in events if e["event"] == "epoch"]
    start: dict[str, Any] = next((e for e in events if e["event"] == "start"), {})
    return vals, start


def kraken_records(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r["kind"] == "val"], next((r for r in rows if r["kind"] == "start"), {})


def summarise(vals: list[dict[str, Any]], rss: dict[str, Any], parameters: int | None) -> dict[str, Any]:
    reach = {f"{t:.0%}": next((round(v["t"], 1) for v in vals if v["cer"] is not None and v["cer"] <= t),
                              None) for t in THRESHOLDS}
    best = min((v for v in vals if v["cer"] is not None), key=lambda v: v["cer"], default=None)
    speeds = [v["lines_per_s"] for v in vals]
    waits = [v["data_wait_fraction"] for v in vals if v.get("data_wait_fraction") is not None]
    return {"parameters": parameters, "lines_per_s": round(speeds[-1], 2) if speeds else None,
            "peak_mb": round(rss["peak_mb"]), "reach_s": reach,
            "best_cer": best["cer"] if best else None, "best_at_s": round(best["t"], 1) if best else None,
            "validations": [(round(v["t"], 1), v["cer"]) for v in vals],
            "data_wait_fraction": round(sum(waits) / len(waits), 4) if waits else None}


def _clock(seconds: float | None) -> str:
    return "-" if seconds is None else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def report(results: dict[str, dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{info['train_lines']} training / {info['val_lines']} validation lines, budget "
          f"{args.budget_minutes:g} min, device {args.device}, one core and one thread per engine on a CPU")
    head = f"{'engine':16} {'params':>7} {'lines/s':>8} {'peak MB':>8} " + " ".join(
        f"{'to ' + f'{t:.0%}':>7}" for t in THRESHOLDS) + f" {'best CER':>9} {'at':>6}"
    print(head)
    for name, r in results.items():
        params = f"{r['parameters'] / 1e6:.2f}M" if r["parameters"] else "-"
        speed = "-" if r["lines_per_s"] is None else f"{r['lines_per_s']:.1f}"
        best = "-" if r["best_cer"] is None else f"{r['best_cer']:.4f}"
        print(f"{name:16} {params:>7} {speed:>8} {r['peak_mb']:>8} "
              + " ".join(f"{_clock(r['reach_s'][f'{t:.0%}']):>7}" for t in THRESHOLDS)
              + f" {best:>9} {_clock(r['best_at_s']):>6}")
    for name, r in results.items():
        print(f"{name} validations (m:ss, CER): "
              + ", ".join(f"{_clock(t)} {c:.3f}" for t, c in r["validations"] if c is not None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000, help="synthetic lines in all (10 %% validation)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--presets", default="small",
                        help="CRNN presets, comma-separated (tiny,small,default,large)")
    parser.add_argument("--crnn-epochs", type=int, default=0,
                        help="the CRNN runs' --epochs (0: the preset's)")
    parser.add_argument("--kraken-batch", type=int, default=1, help="kraken's batch size (its default: 1)")
    parser.add_argument("--kraken-val-lines", type=int, default=0,
                        help="kraken validates every this many training lines (0: a quarter epoch)")
    parser.add_argument("--no-kraken", action="store_true", help="CRNN presets only")
    parser.add_argument("--cores", default="",
                        help="CPU cores to pin the children to, one each (default: those allowed, in order)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from jobs.htr.config import load_config

    presets = [p for p in args.presets.split(",") if p]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-vs-kraken-"))
    work.mkdir(parents=True, exist_ok=True)
    info = prepare(work, args.lines, args.seed, {load_config(p).height for p in presets})
    engines: list[tuple[str, str, list[str]]] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for preset in presets:
        run = work / f"run-crnn-{preset}-{stamp}"
        ds = info["datasets"][load_config(preset).height]
        engines.append((f"crnn {preset}", CRNN_CHILD,
                        [str(ds), str(run), preset, args.device, str(args.crnn_epochs)]))
    kraken_out = work / f"kraken-{stamp}.jsonl"
    if not args.no_kraken:
        val_lines = args.kraken_val_lines or max(1, info["train_lines"] // 4)
        engines.append(("kraken default", KRAKEN_CHILD,
                        [str(info["arrows"]["train"]), str(info["arrows"]["val"]),
                         str(work / f"kraken-{stamp}"), str(kraken_out), args.device, str(args.kraken_batch),
                         str(val_lines), "T0"]))
    allowed = sorted(os.sched_getaffinity(0))
    cores = [int(c) for c in args.cores.split(",") if c] or allowed
    if args.device == "cpu" and len(cores) < len(engines):
        raise SystemExit(f"{len(engines)} engines need {len(engines)} cores to be pinned to, "
                         f"this process may use {len(allowed)}: give fewer --presets or --no-kraken")
    groups = [engines] if args.device == "cpu" else [[e] for e in engines]
    results: dict[str, dict[str, Any]] = {}
    for group in groups:
        t0 = time.time()
        children = {}
        for k, (name, code, given) in enumerate(group):
            child_args = [str(t0) if a == "T0" else a for a in given]
            core = cores[k] if args.device == "cpu" else None
            log = work / f"{name.replace(' ', '-')}-{stamp}.log"
            children[name] = start_child(code, child_args, core, log)
        ended = supervise(children, t0 + args.budget_minutes * 60)
        for name, code, child_args in group:
            if code is CRNN_CHILD:
                vals, start = crnn_records(Path(child_args[1]), t0)
                results[name] = summarise(vals, ended[name], start.get("parameters"))
            else:
                vals, start = kraken_records(kraken_out)
                results[name] = summarise(vals, ended[name], start.get("parameters"))
            results[name]["exit"] = ended[name]["status"]
    saved = {"info": {k: info[k] for k in ("train_lines", "val_lines")},
             "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    (work / f"results-{stamp}.json").write_text(json.dumps(saved, indent=1) + "\n")
    report(results, info, args)
    print(f"\nfiles: {work}")


if __name__ == "__main__":
    main()
