"""Ground truth for the kraken engine: the check, and the compile into kraken's binary dataset.

The same readers as the CRNN engine (jobs/htr/gt.py: PAGE, ALTO, image + .gt.txt pairs) cut the
lines out; `kraken_problems` names every line kraken cannot take (before anything is rented);
`compile_kraken` writes the lines once into kraken's own Arrow IPC dataset with kraken's own
`build_binary_dataset` (as `ketos compile` does), one file per split:

    DS/train.arrow   DS/val.arrow   DS/manifest.json ({"engine": "kraken", "lines", "val_lines",
                                                       "charset", "split", ...})

Lines go in as bounding-box line images (kraken's `path` type), so a model trained on them
expects bbox-style line crops (kraken's `seg_type` "bbox").
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.htr.errors import GroundTruthError
from jobs.htr.gt import GtReport, LineSample, iter_samples
from jobs.htr.kraken_config import DEFAULT_SPEC
from jobs.htr.split import SplitAssigner, seeded_split

ENGINE = "kraken"
MANIFEST = "manifest.json"
WHITESPACE = re.compile(r"\s", re.UNICODE)


@dataclass(frozen=True)
class SpecGeometry:
    """What a VGSL spec does to a line's width: input height (0 = any) and the width reduction."""

    height: int
    reduction: int


def spec_geometry(spec: str) -> SpecGeometry:
    """Input height and total width stride of a VGSL recognition spec (convolution strides and
    max/average pooling; everything else keeps the width)."""
    blocks = spec.strip().strip("[]").split()
    head = re.match(r"(\d+),(\d+),(\d+),(\d+)$", blocks[0]) if blocks else None
    if head is None:
        raise GroundTruthError(f"the kraken spec {spec!r} has no input block like '1,120,0,1'",
                               "give a VGSL spec such as kraken's default (see jobs/htr/presets/kraken.toml)")
    reduction = 1
    for block in blocks[1:]:
        conv = re.match(r"C[a-z]?(?:\{\w+\})?\d+,\d+,\d+,\d+,(\d+)", block)
        pool = re.match(r"[MA]p(?:\{\w+\})?(\d+),(\d+)(?:,\d+,(\d+))?", block)
        if conv:
            reduction *= int(conv.group(1))
        elif pool:
            reduction *= int(pool.group(3) or pool.group(2))
    return SpecGeometry(height=int(head.group(2)), reduction=reduction)


def kraken_text(text: str, normalization: str | None = "NFC") -> str:
    """What kraken's training pipeline makes of a transcription (Unicode normalisation, then
    whitespace normalisation: every whitespace character to a space, stripped)."""
    if normalization and normalization != "none":
        text = unicodedata.normalize(normalization, text)  # type: ignore[arg-type]
    return WHITESPACE.sub(" ", text).strip()


def ctc_frames_needed(text: str) -> int:
    """The fewest output frames CTC needs for `text`: one per character, plus a blank between
    two equal neighbours."""
    return len(text) + sum(1 for a, b in itertools.pairwise(text) if a == b)


def _where(sample: LineSample) -> str:
    return f"{sample.source} line {sample.line_id}"


def sample_problem(sample: LineSample, geo: SpecGeometry, padding: int = 16,
                   normalization: str | None = "NFC") -> str | None:
    """Why kraken cannot train on this line (one human line), or None."""
    raw = sample.text or ""
    text = kraken_text(raw, normalization)
    if not text:
        return f"{_where(sample)}: empty transcription"
    if text != raw:
        return (f"{_where(sample)}: kraken's normalisation changes the text "
                f"({raw[:40]!r} becomes {text[:40]!r})")
    height, width = sample.image.shape[:2]
    scaled = width * geo.height / height if geo.height else width
    frames = int((scaled + 2 * padding) // max(1, geo.reduction))
    needed = ctc_frames_needed(text)
    if frames < needed:
        return (f"{_where(sample)}: too narrow for the network ({width}x{height} px gives ~{frames} "
                f"output frames after the spec's width pooling of {geo.reduction}, the text needs {needed})")
    return None


def kraken_problems(samples: Iterable[LineSample], spec: str = DEFAULT_SPEC, padding: int = 16,
                    normalization: str | None = "NFC") -> list[str]:
    """One human line per ground-truth line kraken cannot take: empty lines, text kraken's
    normalisation changes, lines too short or narrow for the network's width pooling."""
    geo = spec_geometry(spec)
    return [p for s in samples if (p := sample_problem(s, geo, padding, normalization)) is not None]


def refuse(problems: list[str]) -> GroundTruthError:
    """The one-line error for a set of problems."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return GroundTruthError(f"{len(problems)} ground-truth line(s) kraken cannot take: {problems[0]}{more}",
                            "fix or remove those lines and run again, or choose --engine crnn")


def is_kraken_dataset(path: Path) -> bool:
    """True when `path` is a folder compiled by `compile_kraken`."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
        return isinstance(manifest, dict) and manifest.get("engine") == ENGINE
    except (OSError, ValueError):
        return False


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a compiled kraken dataset; GroundTruthError when it is none."""
    if not is_kraken_dataset(path):
        raise GroundTruthError(f"{path} is not a kraken dataset (no {MANIFEST} with engine kraken)",
                               f"compile it: python -m jobs.htr compile GT... --out {path} --engine kraken")
    data: dict[str, Any] = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    for name in ("train.arrow", "val.arrow"):
        if not (Path(path) / name).is_file():
            raise GroundTruthError(f"{path} is damaged: {name} is missing", "compile the ground truth again")
    return data


def _write_pairs(samples: Sequence[LineSample], folder: Path) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, s in enumerate(samples):
        image = folder / f"{i:07d}.png"
        Image.fromarray(s.image).save(image)
        (folder / f"{i:07d}.gt.txt").write_text(s.text or "", encoding="utf-8")
        files.append(str(image))
    return files


def _build(samples: Sequence[LineSample], out: Path, tmp: Path) -> None:
    """kraken's own compile (kraken.lib.arrow_dataset.build_binary_dataset) of these lines."""
    from jobs.htr.kraken_compat import load_kraken

    load_kraken()
    from kraken.lib.arrow_dataset import build_binary_dataset

    files = _write_pairs(samples, tmp / out.stem)
    build_binary_dataset(files, str(out), format_type="path", num_workers=0)


def compile_kraken(inputs: Sequence[Path], out: Path, *, val_fraction: float = 0.1, seed: int = 0,
                   split_files: tuple[Path, Path] | None = None, spec: str = DEFAULT_SPEC,
                   padding: int = 16, normalization: str = "NFC") -> dict[str, Any]:
    """Check and compile ground truth into kraken's binary dataset folder `out`; the manifest.

    Raises GroundTruthError (one line) when nothing is usable or any line is one kraken cannot take.
    """
    started = time.monotonic()
    inputs, out = [Path(p) for p in inputs], Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise GroundTruthError(f"validation fraction {val_fraction} is out of range", "use 0 <= f < 1")
    assigner = SplitAssigner(split_files)
    report = GtReport()
    samples = list(iter_samples(inputs, normalization=normalization, report=report))
    report.raise_if_empty(inputs)
    problems = kraken_problems(samples, spec, padding, normalization)
    if problems:
        raise refuse(problems)
    if assigner.explicit:
        sides = [assigner.assign(s) for s in samples]
        train = [s for s, a in zip(samples, sides, strict=True) if a == "train"]
        val = [s for s, a in zip(samples, sides, strict=True) if a == "val"]
        method = "files"
    else:
        train_ids, val_ids = seeded_split([s.key for s in samples], val_fraction, seed)
        train, val = [samples[i] for i in train_ids], [samples[i] for i in val_ids]
        method = "seeded"
    if not train or not val:
        raise GroundTruthError(f"the split leaves {len(train)} training and {len(val)} validation lines",
                               "kraken needs both: give more ground truth or another --val-fraction/--split")
    charset = sorted({c for s in samples for c in s.text or ""})
    if out.exists() and any(out.iterdir()) and not is_kraken_dataset(out):
        raise GroundTruthError(f"{out} exists and is not a kraken dataset",
                               "give a new or empty directory (an old kraken dataset there is replaced)")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tempfile.TemporaryDirectory(prefix="gpuhire-kraken-") as tmp:
            _build(train, staging / "train.arrow", Path(tmp))
            _build(val, staging / "val.arrow", Path(tmp))
        manifest = {"engine": ENGINE, "format": "kraken-arrow", "lines": len(train), "val_lines": len(val),
                    "charset": charset, "split": method, "seed": seed if method == "seeded" else None,
                    "val_fraction": val_fraction if method == "seeded" else None,
                    "normalization": normalization, "line_type": "bbox", "spec_checked": spec,
                    "skipped": len(report.skipped), "report": report.to_dict(),
                    "train_keys": [s.key for s in train], "val_keys": [s.key for s in val],
                    "seconds": round(time.monotonic() - started, 3)}
        (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                        encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def compile_kraken_main(inputs: Sequence[Path], out: Path, **kwargs: Any) -> int:
    """CLI body of `python -m jobs.htr compile --engine kraken`."""
    manifest = compile_kraken(inputs, out, **kwargs)
    print(f"compiled {manifest['lines'] + manifest['val_lines']} lines ({manifest['lines']} train, "
          f"{manifest['val_lines']} val) into kraken's binary dataset {out}, "
          f"{len(manifest['charset'])} characters")
    return 0
