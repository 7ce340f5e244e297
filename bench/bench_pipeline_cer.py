"""Benchmark: end-to-end quality on raw scans against recognition of the ground-truth lines.

Synthetic pages whose ground truth is known (`python -m jobs.htr synth`, a seed the model never
saw) are read twice with the same model, both through the real `gpuhire infer` (CPU path):

- lines only: the PAGE XML files with their images, so the ground truth's own lines are read;
- the whole pipeline: the page images alone (no XML), so kraken's layout analysis finds the lines
  first and gpuhire recognises what it found.

The pipeline's lines are matched to the ground-truth lines by position (bounding-box overlap,
greedy, best first). A ground-truth line that nothing matched counts as all deleted, a found
line that matches nothing as all inserted, so a segmentation that misses or invents lines pays
for it. CER = edit operations / ground-truth characters, over all lines of all pages.

    python bench/bench_pipeline_cer.py --model run/model.pt [--pages 6] [--seed 99]
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

MIN_IOU = 0.3


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def page_errors(truth: Path, found: Path) -> tuple[int, int, int, int]:
    """(edit operations, ground-truth characters, lines matched, ground-truth lines) of one page."""
    from rapidfuzz.distance import Levenshtein

    from jobs.htr.formats import parse_xml

    gt = [ln for ln in parse_xml(truth).lines if ln.text and ln.bbox]
    got = [ln for ln in parse_xml(found).lines if ln.bbox] if found.exists() else []
    pairs = sorted(((_iou(g.bbox, f.bbox), i, j) for i, g in enumerate(gt) for j, f in enumerate(got)
                    if g.bbox and f.bbox), reverse=True)
    used_g: set[int] = set()
    used_f: set[int] = set()
    edits = 0
    for iou, i, j in pairs:
        if iou < MIN_IOU:
            break
        if i in used_g or j in used_f:
            continue
        used_g.add(i)
        used_f.add(j)
        edits += Levenshtein.distance(gt[i].text or "", got[j].text or "")
    edits += sum(len(g.text or "") for i, g in enumerate(gt) if i not in used_g)
    edits += sum(len(f.text or "") for j, f in enumerate(got) if j not in used_f)
    return edits, sum(len(g.text or "") for g in gt), len(used_g), len(gt)


def lines_errors(truth: Path, read: Path) -> tuple[int, int]:
    """(edit operations, characters) of the ground truth's own lines, matched by line id."""
    from rapidfuzz.distance import Levenshtein

    from jobs.htr.formats import parse_xml

    got = {ln.line_id: ln.text or "" for ln in parse_xml(read).lines}
    gt = [ln for ln in parse_xml(truth).lines if ln.text]
    return (sum(Levenshtein.distance(g.text or "", got.get(g.line_id, "")) for g in gt),
            sum(len(g.text or "") for g in gt))


def _infer(inputs: Path, out: Path, model: Path, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "launcher", "infer", str(inputs), "--model", str(model),
                    "--out", str(out), "--gpu", "none", "--yes"], check=True, env=env)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--pages", type=int, default=6, help="synthetic pages to read (about 12 lines each)")
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    from jobs.htr.synth import synth

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pipeline-cer-"))
    truth = work / "gt" / "pages"
    if not truth.exists():
        synth(work / "gt", args.pages * 12, args.seed, pairs=False)
    scans = work / "scans"
    shutil.rmtree(scans, ignore_errors=True)
    scans.mkdir(parents=True)
    for image in sorted(truth.glob("*.jpg")):
        shutil.copyfile(image, scans / image.name)
    env = {**os.environ, "GPUHIRE_DB": f"sqlite:///{work / 'ledger.db'}"}
    lines_s = _infer(truth, work / "out-lines", args.model, env)
    pipe_s = _infer(scans, work / "out-scans", args.model, env)
    le = lc = pe = pc = matched = total = 0
    for xml in sorted(truth.glob("*.xml")):
        e, c = lines_errors(xml, work / "out-lines" / xml.name)
        le, lc = le + e, lc + c
        e, c, m, t = page_errors(xml, work / "out-scans" / xml.name)
        pe, pc, matched, total = pe + e, pc + c, matched + m, total + t
    result = {"pages": len(list(truth.glob("*.xml"))), "gt_lines": total, "lines_matched": matched,
              "cer_lines_only": round(le / lc, 4), "cer_pipeline": round(pe / pc, 4),
              "ratio": round((pe / pc) / (le / lc), 2) if le else None,
              "seconds_lines_only": round(lines_s, 1), "seconds_pipeline": round(pipe_s, 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
