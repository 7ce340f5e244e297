"""Benchmark: training throughput of the real trainer against a naive loop, in one run.

Both train the same model (a preset, `small` by default) for one epoch over the same synthetic
training lines, each in a fresh child process (so peak memories do not mix):

- ours:  `jobs.htr.train.train` on the compiled, memory-mapped dataset: width-bucketed batches
         under a pixel budget, DataLoader workers, the hardware's precision (fp32 on a CPU);
- naive: what many HTR trainers do: decode and resize each PNG at every step, random batches of
         a fixed size (so lots of padding), no workers, fp32.

Reported: lines/s, data-wait fraction (time blocked waiting for the next batch / loop time),
peak RSS of the process and its workers, and the ratio ours / naive.

    python bench/bench_trainer.py [--lines 600] [--preset small] [--batch 16] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, gt, ds, run, preset, batch = sys.argv[1:7]
import numpy as np, torch
from PIL import Image
from jobs.htr.config import load_config
from jobs.htr.dataset import CompiledDataset

def peak_mb():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024

if mode == "ours":
    from jobs.htr.events import EventWriter, read_events
    from jobs.htr.train import train
    cfg = load_config(preset, epochs=1, probe_batch=False)
    train(Path(ds), Path(run), cfg, events=EventWriter("bench", Path(run) / "ev.jsonl"))
    ep = next(e for e in read_events(Path(run) / "ev.jsonl") if e["event"] == "epoch")
    out = {"lines_per_s": ep["lines_per_s"], "data_wait_fraction": ep["data_wait_fraction"],
           "seconds": ep["seconds"], "peak_mb": peak_mb()}
else:
    from torch.nn import functional as F
    from jobs.htr.lineimage import fit_height
    from jobs.htr.model import CRNN, codec_index, encode
    from jobs.htr.hardware import set_cpu_threads
    set_cpu_threads()
    data = CompiledDataset(Path(ds))  # only for the split, the texts and the codec
    cfg = load_config(preset)
    torch.manual_seed(0)
    model = CRNN(cfg, data.height, len(data.codec) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    index = codec_index(data.codec)
    ids = np.random.default_rng(0).permutation(data.train_ids)
    wait = 0.0
    started = time.monotonic()
    for s in range(0, len(ids), int(batch)):
        t0 = time.monotonic()
        chosen = ids[s:s + int(batch)]
        images = []
        for i in chosen:  # decode + resize every time, as naive trainers do
            png = Path(gt) / (data.keys[i] + ".png")  # pairs: the key is the path without .gt.txt
            images.append(fit_height(np.asarray(Image.open(png).convert("L")), data.height))
        widest = max(im.shape[1] for im in images)
        x = torch.full((len(images), 1, data.height, widest), 255, dtype=torch.uint8)
        for k, im in enumerate(images):
            x[k, 0, :, : im.shape[1]] = torch.from_numpy(im)
        labels = [encode(data.text(i), index) for i in chosen]
        wait += time.monotonic() - t0
        log_probs = model(x)
        frames = model.frames(torch.tensor([im.shape[1] for im in images]))
        loss = F.ctc_loss(log_probs, torch.tensor([c for l in labels for c in l]), frames,
                          torch.tensor([len(l) for l in labels]), zero_infinity=True)
        opt.zero_grad(); loss.backward(); opt.step()
    seconds = time.monotonic() - started
    out = {"lines_per_s": len(ids) / seconds, "data_wait_fraction": wait / seconds, "seconds": seconds,
           "peak_mb": peak_mb()}
print(json.dumps(out))
"""


def _child(mode: str, gt: Path, ds: Path, run: Path, preset: str, batch: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(gt), str(ds), str(run), preset, str(batch)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=16, help="naive loop's fixed batch size")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from jobs.htr.config import load_config
    from jobs.htr.dataset import compile_dataset
    from jobs.htr.synth import synth

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-trainer-"))
    gt = work / "gt"
    if not gt.exists():
        synth(gt, args.lines, 1, pages=False, pairs=True)  # line PNGs: what the naive loop decodes
    height = load_config(args.preset).height
    ds = work / f"ds{height}"
    if not ds.exists():
        compile_dataset([gt], ds, height=height)
    results = {}
    for mode in ("naive", "ours"):
        t = time.monotonic()
        results[mode] = _child(mode, gt, ds, work / f"run-{mode}-{time.time_ns()}", args.preset,
                               args.batch)
        print(f"{mode:6} {results[mode]['lines_per_s']:8.1f} lines/s  data wait "
              f"{results[mode]['data_wait_fraction']:6.1%}  peak {results[mode]['peak_mb']:7.0f} MB  "
              f"(epoch {results[mode]['seconds']:.1f} s, wall {time.monotonic() - t:.1f} s)")
    ratio = results["ours"]["lines_per_s"] / results["naive"]["lines_per_s"]
    print(f"ratio ours/naive: {ratio:.2f}x lines/s ({args.lines} lines, preset {args.preset})")


if __name__ == "__main__":
    main()
