"""Benchmark: scaling efficiency of the trainer from 1 to N processes, and each rank's data wait.

The same compiled synthetic lines are trained for a few epochs by one process (`python -m
jobs.htr train`) and by N processes under torchrun (`--gpus N`'s command on a box:
launcher.train.gpus.torchrun_args), each run in a fresh folder. The last epoch (warm: the
first one pays for imports and allocator warm-up) gives:

- lines/s (every rank's lines together) and scaling efficiency = lines/s(N) / (N x lines/s(1)),
  the figure the quote's default (0.85 per doubling, launcher/train/quote.py) stands in for;
- the data-wait fraction of every rank (the epoch event's data_wait_by_rank): a rank that waits
  for its batches is a GPU the box pays for and starves.

On a machine without CUDA the processes are gloo processes on the CPU (`--device cpu`): they
share the same cores, so the CPU figures measure DDP's overhead, not a speed-up; the GPU figures
need a multi-GPU machine (`--device cuda`, one process per GPU).

    python bench/bench_multi_gpu.py [--lines 400] [--gpus 2] [--epochs 2] [--preset tiny]
                                    [--device cpu] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _run(n: int, ds: Path, run: Path, args: argparse.Namespace) -> dict[str, object]:
    from launcher.train.gpus import torchrun_args

    events = run / "events.jsonl"
    module = ["-m", "jobs.htr"] if n == 1 else torchrun_args(n)
    argv = [sys.executable, *module, "train", str(ds), "--out", str(run), "--preset", args.preset,
            "--epochs", str(args.epochs), "--events", str(events), "--device", args.device]
    started = time.monotonic()
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, timeout=3600)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{n} process(es) failed:\n{done.stderr.decode()[-3000:]}")
    epochs = [json.loads(x) for x in events.read_text().splitlines()
              if x.strip() and json.loads(x)["event"] == "epoch"]
    last = epochs[-1]
    return {"processes": n, "lines_per_s": last["lines_per_s"], "epoch_s": last["seconds"],
            "data_wait_by_rank": last.get("data_wait_by_rank", [last["data_wait_fraction"]]),
            "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--gpus", type=int, default=2, help="N processes to compare with one")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu (gloo processes) or cuda (one per GPU)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    from jobs.htr.config import load_config
    from jobs.htr.dataset import compile_dataset
    from jobs.htr.synth import synth

    with tempfile.TemporaryDirectory(prefix="bench-multi-gpu-") as tmp:
        work = args.workdir or Path(tmp)
        gt, ds = work / "gt", work / "ds"
        if not ds.exists():
            synth(gt, args.lines, seed=7)
            compile_dataset([gt], ds, height=load_config(args.preset).height, seed=0)
        one = _run(1, ds, work / "run-1", args)
        many = _run(args.gpus, ds, work / f"run-{args.gpus}", args)
    eff = float(many["lines_per_s"]) / (args.gpus * float(one["lines_per_s"]))  # type: ignore[arg-type]
    print(json.dumps({"device": args.device, "preset": args.preset, "lines": args.lines,
                      "one": one, "many": many, "scaling_efficiency": round(eff, 3)}, indent=1))


if __name__ == "__main__":
    main()
