"""Benchmark: synthetic ground truth, compiling it, and reading lines back (memmap vs decoding).

Measures on this machine, for N synthetic lines:
- synth: lines/s rendered and written;
- compile: lines/s, and the peak memory of a compile against loading every line into RAM
  (each in a fresh child process, so peaks do not mix);
- reading one epoch in random order: lines/s from the compiled memory map against the naive
  loop that decodes each image file and resizes it on every access (what trainers that
  "decode PNGs every epoch" do).

    python bench/bench_dataset.py [--lines 4000] [--seed 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.htr.dataset import CompiledDataset
from jobs.htr.gt import iter_samples
from jobs.htr.lineimage import crop_line, fit_height, load_gray
from jobs.htr.synth import synth

CHILD = """
import json, resource, sys, time
from pathlib import Path
from jobs.htr.dataset import compile_dataset
from jobs.htr.gt import load_ground_truth
mode, src, out, workers = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if mode == "compile":
    n = compile_dataset([src], out, workers=workers).lines
else:
    samples, _ = load_ground_truth([src])
    n = len(samples)
print(json.dumps({"lines": n, "s": time.perf_counter() - t,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "base_mb": base / 1024}))
"""


def child(mode: str, src: Path, out: Path, workers: int = 1) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out), str(workers)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def read_memmap(ds: CompiledDataset, order: np.ndarray) -> float:
    t = time.perf_counter()
    total = 0.0
    for i in order:
        x = ds.image(int(i)).astype(np.float32) / 255.0  # what a collate function does
        total += float(x[0, 0])
    return len(order) / (time.perf_counter() - t)


def read_naive(src: Path, height: int, order: np.ndarray) -> float:
    """Decode the page (or line) image and cut + resize the line on every access."""
    where = [(s.image_path, s.source, s.line_id) for s in iter_samples([src])]
    polygons = {}
    from jobs.htr.formats import parse_xml

    for path in {w[1] for w in where if w[1].suffix == ".xml"}:
        for line in parse_xml(path).lines:
            polygons[(path, line.line_id)] = (line.polygon, line.bbox)
    t = time.perf_counter()
    for i in order:
        image_path, source, line_id = where[int(i)]
        if source.suffix == ".xml":
            page, _ = load_gray(image_path)
            crop = crop_line(page, *polygons[(source, line_id)])
        else:
            with Image.open(image_path) as im:
                crop = np.asarray(im.convert("L"))
        x = fit_height(crop, height).astype(np.float32) / 255.0
        assert x.shape[0] == height
    return len(order) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    gt, ds_path = work / "gt", work / "ds"

    report = synth(gt, args.lines, args.seed)
    rate = args.lines / report.seconds
    print(f"synth     {args.lines} lines in {report.seconds:.1f} s = {rate:.0f} lines/s "
          f"({report.pages} pages, {len(report.fonts)} fonts)")
    compiled = child("compile", gt, ds_path)
    for workers in (1, os.cpu_count() or 1):
        timed = child("compile", gt, work / f"ds{workers}", workers)
        print(f"compile   {timed['lines']:.0f} lines with {workers} worker(s) in {timed['s']:.1f} s = "
              f"{timed['lines'] / timed['s']:.0f} lines/s")
    loaded = child("load-all", gt, ds_path)
    print(f"compile   peak RSS {compiled['peak_mb']:.0f} MB streaming "
          f"(after imports {compiled['base_mb']:.0f} MB)")
    print(f"load-all  peak RSS {loaded['peak_mb']:.0f} MB holding every line in RAM "
          f"(after imports {loaded['base_mb']:.0f} MB)")
    ds = CompiledDataset(ds_path)
    order = np.random.default_rng(0).permutation(len(ds))
    sample = order[: min(len(order), 1000)]
    mm = read_memmap(ds, order)
    naive = read_naive(gt, ds.height, sample)
    print(f"read      memmap {mm:.0f} lines/s, decode-every-access {naive:.0f} lines/s "
          f"= {mm / naive:.0f}x ({ds.meta['image_bytes'] / 1e6:.0f} MB of pixels)")


if __name__ == "__main__":
    main()
