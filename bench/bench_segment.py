"""Benchmark: layout analysis of raw page scans, gpuhire against kraken's own CLI, in one run.

The same synthetic pages (page-shaped JPEGs of `python -m jobs.htr synth`, about 12 lines each)
are segmented by

- gpuhire: `jobs.htr.segment.Segmenter` (kraken's baseline segmenter with its bundled model,
  loaded once) writing PAGE XML with `write_layout`, as `gpuhire infer` does on a scan;
- kraken: its own CLI, `kraken -I 'pages/*.jpg' -o .xml -x segment -bl` (one process for all pages).

Each side runs in a fresh process with the same number of torch threads, and the two alternate
(gpuhire, kraken, gpuhire, kraken, ...) so that a busy machine slows both alike; the faster of the
repeats counts. Times include start-up and model loading, so per page = process time / pages.
Then the whole pipeline (`gpuhire infer` on the scans with a model of the chosen preset: layout
analysis, recognition, PAGE out) on the CPU, in pages/s. On a machine with a CUDA GPU, kraken and
gpuhire are also timed with `--device cuda`.

kraken's CLI imports torchvision; where the installed torchvision does not load beside this
torch (the registry's CUDA build beside CPU torch), the CLI is started after
`jobs.htr.kraken_compat.load_kraken()`, which is what gpuhire does too; kraken itself is unchanged.

    python bench/bench_segment.py [--pages 4] [--threads 1] [--repeats 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GPUHIRE = """
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[1]))
from jobs.htr.segment import Segmenter, write_layout
seg = Segmenter(device=sys.argv[2])
for name in sys.argv[4:]:
    image = Path(name)
    from PIL import Image
    layout = seg.segment(Image.open(image))
    write_layout(layout, image.name, Path(sys.argv[3]) / (image.stem + ".xml"))
"""

KRAKEN = """
import sys
from jobs.htr.kraken_compat import load_kraken
load_kraken()
from kraken.kraken import cli
sys.argv[0] = "kraken"
cli()
"""


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _count_lines(folder: Path) -> int:
    """TextLine elements in the PAGE files of `folder` (with or without a namespace prefix)."""
    import re

    return sum(len(re.findall(r"<(?:\w+:)?TextLine[\s>]", p.read_text(encoding="utf-8")))
               for p in folder.glob("*.xml"))


def compare(pages: list[Path], work: Path, threads: int, repeats: int, device: str) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    ours_out, theirs_out = work / f"gpuhire-{device}", work / f"kraken-{device}"
    ours, theirs = [], []
    for _ in range(repeats):
        for folder in (ours_out, theirs_out):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
        ours.append(_timed([sys.executable, "-c", GPUHIRE, str(threads), device, str(ours_out),
                            *map(str, pages)], env))
        links = theirs_out / "in"
        links.mkdir()
        for page in pages:
            os.symlink(page.resolve(), links / page.name)
        theirs.append(_timed([sys.executable, "-c", KRAKEN, "--threads", str(threads), "--device", device,
                              "-I", str(links / "*.jpg"), "-o", ".xml", "-x", "segment", "-bl"], env))
    best_ours, best_theirs = min(ours), min(theirs)
    return {"device": device, "threads": threads, "pages": len(pages),
            "gpuhire_s_per_page": round(best_ours / len(pages), 2),
            "kraken_cli_s_per_page": round(best_theirs / len(pages), 2),
            "ratio_gpuhire_to_kraken": round(best_ours / best_theirs, 3),
            "lines_found_gpuhire": _count_lines(ours_out),
            "lines_found_kraken": _count_lines(theirs_out / "in")}


def pipeline(pages: list[Path], work: Path, preset: str) -> dict[str, object]:
    """`gpuhire infer` on the scans (CPU path) with an untrained model of `preset`."""
    import torch

    from jobs.htr.checkpoint import export_model
    from jobs.htr.config import load_config
    from jobs.htr.model import CRNN

    cfg = load_config(preset)
    codec = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-"))
    torch.manual_seed(0)
    model = CRNN(cfg, cfg.height, len(codec) + 1).eval()
    model_path = work / "model.pt"
    export_model(model_path, model, cfg, codec, cfg.height, {})
    scans = work / "scans"
    shutil.rmtree(scans, ignore_errors=True)
    scans.mkdir()
    for page in pages:
        shutil.copyfile(page, scans / page.name)
    env = {**os.environ, "GPUHIRE_DB": f"sqlite:///{work / 'ledger.db'}"}
    seconds = _timed([sys.executable, "-m", "launcher", "infer", str(scans), "--model", str(model_path),
                      "--out", str(work / "out"), "--gpu", "none", "--yes"], env)
    return {"pipeline_pages": len(pages), "pipeline_s": round(seconds, 1),
            "pipeline_pages_per_s": round(len(pages) / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from jobs.htr.synth import synth

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-segment-"))
    gt = work / "gt"
    if not gt.exists():
        synth(gt, args.pages * 12, 5, pairs=False)
    pages = sorted((gt / "pages").glob("*.jpg"))[: args.pages]
    results = [compare(pages, work, args.threads, args.repeats, "cpu")]
    import torch

    if torch.cuda.is_available():
        results.append(compare(pages, work, args.threads, args.repeats, "cuda"))
    print(json.dumps({"segmentation": results, **pipeline(pages, work, args.preset)}, indent=2))


if __name__ == "__main__":
    main()
