"""Benchmark: CPU inference lines/s, fp32 against int8 dynamic quantisation, in one run.

Uses a model of the chosen preset (weights as initialised: speed does not depend on training)
exported like a trained one, and N synthetic line images; `recognise` reads, batches by width,
recognises and writes the text, as `python -m jobs.htr infer` does. Each mode runs twice and
the faster run counts (the first warms caches).

    python bench/bench_infer.py [--lines 300] [--preset small] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    import torch

    from jobs.htr.checkpoint import export_model
    from jobs.htr.config import load_config
    from jobs.htr.hardware import physical_cores
    from jobs.htr.infer import recognise
    from jobs.htr.model import CRNN, count_parameters
    from jobs.htr.synth import synth

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-infer-"))
    gt = work / "gt"
    if not gt.exists():
        synth(gt, args.lines, 2, pages=False, pairs=True)
    cfg = load_config(args.preset)
    codec = sorted(set("".join(p.read_text() for p in gt.rglob("*.gt.txt"))) - {"\n"})
    torch.manual_seed(0)
    model = CRNN(cfg, cfg.height, len(codec) + 1).eval()
    export_model(work / "model.pt", model, cfg, codec, cfg.height, {})
    print(f"preset {args.preset}: {count_parameters(model):,} parameters, {args.lines} lines, "
          f"{physical_cores()} physical cores")
    speed = {}
    for int8 in (False, True):
        runs = [recognise(work / "model.pt", [gt], work / f"out-{int8}", int8=int8, device="cpu")
                for _ in range(2)]
        best = max(runs, key=lambda r: r.lines_per_s)
        speed[int8] = best.lines_per_s
        print(f"{'int8' if int8 else 'fp32'}  {best.lines_per_s:7.1f} lines/s  ({best.seconds:.1f} s)")
    print(f"int8 / fp32: {speed[True] / speed[False]:.2f}x")


if __name__ == "__main__":
    main()
