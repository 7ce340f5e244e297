"""Compile ground truth once into a memory-mappable dataset; open it without decoding anything.

Layout of a compiled dataset directory (version 1):

    images.u8     every line image, height-normalised, uint8 row-major (height, width), back to back
    index.npy     int64 (N, 2): byte offset into images.u8 and width of line i
    texts.jsonl   one JSON object per line i: {"key", "text", "source", "line"}
    codec.json    the sorted list of characters in all texts
    split.json    {"train": [ids], "val": [ids], "method": "seeded" | "files", "seed": S}
    meta.json     {"format", "version", "height", "normalization", "lines", "train", "val", ...}
    report.json   the ground-truth report: files, usable lines, skipped samples with reasons

Compiling streams: one page image and one line are in memory at a time. The directory is
written under a temporary name and renamed into place, so a crash never leaves half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from jobs.htr.errors import GroundTruthError
from jobs.htr.files import discover
from jobs.htr.gt import GtReport, LineSample, normalize_text, read_file
from jobs.htr.interrupt import default_in_worker
from jobs.htr.lineimage import fit_height
from jobs.htr.split import SplitAssigner, seeded_split

FORMAT = "gpuhire-htr-dataset"
VERSION = 1
FILES = ("images.u8", "index.npy", "texts.jsonl", "codec.json", "split.json", "meta.json", "report.json")


@dataclass
class CompileReport:
    """What `compile_dataset` wrote."""

    out: Path
    lines: int  # lines in the dataset
    train: int
    val: int
    unassigned: int  # lines named in neither explicit split file (kept out of both)
    height: int
    image_bytes: int  # size of images.u8
    max_width: int
    codec: list[str]
    source_hash: str  # sha256 over keys, texts and pixels: equal hashes, equal datasets
    seconds: float
    gt: GtReport = field(repr=False)

    def summary(self) -> str:
        """Two lines for people, then the ground-truth report."""
        return (f"compiled {self.lines} lines ({self.train} train, {self.val} val"
                + (f", {self.unassigned} in no split file" if self.unassigned else "")
                + f") at {self.height} px into {self.out} in {self.seconds:.1f} s\n"
                f"{self.image_bytes / 1e6:.1f} MB of pixels, widest line {self.max_width} px, "
                f"{len(self.codec)} characters\n" + self.gt.summary())


def _check_args(height: int, val_fraction: float, normalization: str) -> None:
    if not 8 <= height <= 512:
        raise GroundTruthError(f"line height {height} px is out of range", "use 8 to 512 (64-96 is usual)")
    if not 0.0 <= val_fraction < 1.0:
        raise GroundTruthError(f"validation fraction {val_fraction} is out of range", "use 0 <= f < 1")
    normalize_text("", normalization)


def _prepare_target(out: Path) -> Path:
    """Check `out` may be (re)written; return the temporary directory to write into."""
    if out.exists():
        if not out.is_dir():
            raise GroundTruthError(f"{out} exists and is a file", "give a directory for the dataset")
        if any(out.iterdir()) and not (out / "meta.json").is_file():
            raise GroundTruthError(f"{out} exists and is not a compiled dataset",
                                   "give a new or empty directory (an old dataset there is replaced)")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def compile_dataset(inputs: Sequence[Path], out: Path, *, height: int = 64, normalization: str = "NFC",
                    val_fraction: float = 0.1, seed: int = 0, split_files: tuple[Path, Path] | None = None,
                    workers: int | None = None) -> CompileReport:
    """Compile ground truth under `inputs` into a dataset directory `out` (see the module doc).

    `split_files` = (train file, val file) overrides the seeded split; lines listed in neither are
    left out of both. `workers` processes decode files in parallel (default: up to 8 when there
    are enough files; 1 = in this process); the result is the same for any number. Raises
    GroundTruthError when no usable line remains.
    """
    started = time.monotonic()
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    _check_args(height, val_fraction, normalization)
    assigner = SplitAssigner(split_files)
    tmp = _prepare_target(out)
    try:
        report = GtReport()
        samples = _iter_fitted(inputs, height, normalization, report, workers)
        written = _stream(samples, tmp, assigner)
        report.raise_if_empty(inputs)
        result = _finish(tmp, out, written, report, height=height, normalization=normalization,
                         val_fraction=val_fraction, seed=seed, explicit=assigner.explicit)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, out)
    result.seconds = time.monotonic() - started
    return result


@dataclass
class _Written:
    index: list[tuple[int, int]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    assigned: list[str | None] = field(default_factory=list)
    chars: set[str] = field(default_factory=set)
    offset: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)


FileLines = tuple[list[LineSample], GtReport]


def _fitted_file(job: tuple[Path, str, str], height: int, normalization: str) -> FileLines:
    """Read one file and bring its lines to `height` (runs in a worker process)."""
    report = GtReport()
    samples = list(read_file(*job, normalization=normalization, report=report))
    for sample in samples:
        sample.image = fit_height(sample.image, height)
    return samples, report


def _merge(results: Iterable[FileLines], report: GtReport) -> Iterator[LineSample]:
    for samples, part in results:  # in file order, whatever finished first
        report.files += part.files
        report.lines += part.lines
        report.skipped.extend(part.skipped)
        yield from samples


def _iter_fitted(inputs: Sequence[Path], height: int, normalization: str, report: GtReport,
                 workers: int | None) -> Iterator[LineSample]:
    """Every usable line at `height`, in discovery order, decoded by `workers` processes."""
    jobs = discover(inputs)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(jobs) >= 16 else 1
    work = partial(_fitted_file, height=height, normalization=normalization)
    if workers <= 1:
        yield from _merge(map(work, jobs), report)
        return
    with multiprocessing.Pool(workers, initializer=default_in_worker) as pool:
        yield from _merge(pool.imap(work, jobs, chunksize=1), report)


def _stream(samples: Iterable[LineSample], tmp: Path, assigner: SplitAssigner) -> _Written:
    w = _Written()
    with open(tmp / "images.u8", "wb") as images, open(tmp / "texts.jsonl", "w", encoding="utf-8") as texts:
        for sample in samples:
            text = sample.text or ""
            line = sample.image
            data = line.tobytes()
            images.write(data)
            w.index.append((w.offset, line.shape[1]))
            w.offset += len(data)
            w.keys.append(sample.key)
            w.assigned.append(assigner.assign(sample))
            w.chars.update(text)
            record = {"key": sample.key, "text": text, "source": sample.key.split("#", 1)[0],
                      "line": sample.line_id}
            texts.write(json.dumps(record, ensure_ascii=False) + "\n")
            for part in (sample.key.encode(), b"\0", text.encode(), b"\0", str(line.shape).encode(), data):
                w.hasher.update(part)
    return w


def _finish(tmp: Path, out: Path, w: _Written, report: GtReport, *, height: int, normalization: str,
            val_fraction: float, seed: int, explicit: bool) -> CompileReport:
    index = np.asarray(w.index, dtype=np.int64).reshape(-1, 2)
    np.save(tmp / "index.npy", index)
    codec = sorted(w.chars)
    split: dict[str, Any]
    if explicit:
        train = [i for i, a in enumerate(w.assigned) if a == "train"]
        val = [i for i, a in enumerate(w.assigned) if a == "val"]
        if not train:
            raise GroundTruthError("the training split file names none of the usable lines",
                                   "list line keys as written in texts.jsonl (file#line) or image paths")
        split = {"method": "files", "seed": None, "train": train, "val": val}
    else:
        train, val = seeded_split(w.keys, val_fraction, seed)
        split = {"method": "seeded", "seed": seed, "val_fraction": val_fraction, "train": train, "val": val}
    unassigned = len(w.keys) - len(train) - len(val)
    max_width = int(index[:, 1].max()) if len(index) else 0
    source_hash = w.hasher.hexdigest()
    meta = {"format": FORMAT, "version": VERSION, "height": height, "normalization": normalization,
            "lines": len(w.keys), "train": len(train), "val": len(val), "unassigned": unassigned,
            "image_bytes": w.offset, "max_width": max_width, "characters": len(codec),
            "source_hash": source_hash, "skipped": len(report.skipped)}
    _write_json(tmp / "codec.json", codec)
    _write_json(tmp / "split.json", split)
    _write_json(tmp / "report.json", report.to_dict())
    _write_json(tmp / "meta.json", meta)  # last: its presence marks a complete dataset
    return CompileReport(out=out, lines=len(w.keys), train=len(train), val=len(val), unassigned=unassigned,
                         height=height, image_bytes=w.offset, max_width=max_width, codec=codec,
                         source_hash=source_hash, seconds=0.0, gt=report)


def is_compiled_dataset(path: Path) -> bool:
    """True when `path` is a directory holding a compiled dataset (its meta.json says so)."""
    try:
        meta = json.loads((Path(path) / "meta.json").read_text(encoding="utf-8"))
        return isinstance(meta, dict) and meta.get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class CompiledDataset:
    """A compiled dataset opened read-only; images come straight from a memory map.

    Picklable: the memory map is not pickled but reopened lazily in each DataLoader worker.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fix = f"compile it first: python -m jobs.htr compile GT... --out {self.path}"
            raise GroundTruthError(f"{self.path} is not a compiled dataset ({exc})", fix) from exc
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise GroundTruthError(f"{self.path} is a dataset of format {self.meta.get('format')} version "
                                   f"{self.meta.get('version')}, this code reads {FORMAT} {VERSION}",
                                   "compile the ground truth again")
        self.height: int = int(self.meta["height"])
        self._index = np.load(self.path / "index.npy")
        self.widths: np.ndarray = self._index[:, 1].copy()
        self.keys: list[str] = []
        self.texts: list[str] = []
        with open(self.path / "texts.jsonl", encoding="utf-8") as fh:
            for row in fh:
                record = json.loads(row)
                self.keys.append(record["key"])
                self.texts.append(record["text"])
        self.codec: list[str] = json.loads((self.path / "codec.json").read_text(encoding="utf-8"))
        split = json.loads((self.path / "split.json").read_text(encoding="utf-8"))
        self.train_ids: np.ndarray = np.asarray(split["train"], dtype=np.int64)
        self.val_ids: np.ndarray = np.asarray(split["val"], dtype=np.int64)
        self._check_sizes()
        self._images: np.memmap | None = None

    def _check_sizes(self) -> None:
        size = (self.path / "images.u8").stat().st_size
        expected = int(self.meta["image_bytes"])
        if size != expected or not len(self.texts) == len(self._index) == int(self.meta["lines"]):
            raise GroundTruthError(f"{self.path} is damaged (images.u8 is {size} bytes, expected {expected})",
                                   "compile the ground truth again")

    def __len__(self) -> int:
        return len(self._index)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = None  # each process maps the file itself
        return state

    def _map(self) -> np.memmap:
        if self._images is None:
            self._images = np.memmap(self.path / "images.u8", dtype=np.uint8, mode="r")
        return self._images

    def image(self, i: int) -> np.ndarray:
        """Line `i` as a read-only (height, width) uint8 view of the memory map."""
        offset, width = (int(v) for v in self._index[i])
        return self._map()[offset:offset + self.height * width].reshape(self.height, width)

    def text(self, i: int) -> str:
        """The transcription of line `i`."""
        return self.texts[i]

    def key(self, i: int) -> str:
        """The key of line `i` (`file#line`), as split files name it."""
        return self.keys[i]


def compile_main(inputs: Sequence[Path], out: Path, *, height: int = 64, normalization: str = "NFC",
                 val_fraction: float = 0.1, seed: int = 0, split_files: tuple[Path, Path] | None = None,
                 workers: int | None = None) -> int:
    """CLI body of `python -m jobs.htr compile`: compile, print the summary, return the exit status.

    Raises GroundTruthError (the CLI prints it as one line) when nothing usable is left.
    """
    report = compile_dataset(inputs, out, height=height, normalization=normalization,
                             val_fraction=val_fraction, seed=seed, split_files=split_files, workers=workers)
    print(report.summary())
    return 0
