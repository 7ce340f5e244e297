"""Recognise text with a trained model: `python -m jobs.htr infer --model M INPUT...` or `recognise(...)`.

The model is gpuhire's own (RUN/model.pt) or a kraken recognition model (.mlmodel, .safetensors;
see jobs.htr.kraken_recognise). Inputs are PAGE XML or ALTO files (with their page images) and
bare line images, or folders of them. For each XML file the recognised lines are written into a
copy under OUT (same relative path; TextEquiv/Unicode in PAGE, String CONTENT in ALTO, with
confidences) and as plain text (`.txt`, one line per line). A bare line image gets a `.txt` of
its own. Page scans without XML are segmented first by jobs.htr.pages (`recognise_pages`), which
then runs a `Recogniser` over the layout it wrote.

Lines are gathered over whole files (a few hundred at a time), sorted by width and cut into
batches under a pixel budget, so that little of each batch is padding. On a CPU torch gets one
thread per physical core (hyper-threads and oversubscription slow small LSTMs down);
`int8=True` quantises the LSTM and Linear layers dynamically (CPU only).
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from jobs.htr.data import collate
from jobs.htr.errors import HtrError
from jobs.htr.gt import GtReport, LineSample, iter_lines_for_inference
from jobs.htr.hardware import autocast_dtype, pick_device, pick_precision, set_cpu_threads
from jobs.htr.lineimage import fit_height
from jobs.htr.model import CRNN, greedy_decode, load_exported
from jobs.htr.sampler import make_batches
from jobs.htr.writeback import write_text

CHUNK_LINES = 256  # lines gathered (whole files) before recognising them together
BATCH_PIXELS = 2_000_000
MAX_BATCH = 64


@dataclass
class InferProgress:
    """Passed to the progress callback after each file."""

    file: Path  # the XML or image just finished
    files_done: int
    lines_done: int


@dataclass
class InferReport:
    """What `recognise` did."""

    files: int = 0  # XML files and line images written
    lines: int = 0  # lines recognised
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)  # every file written
    device: str = "cpu"
    int8: bool = False
    gt: GtReport = field(default_factory=GtReport, repr=False)  # skipped lines (missing images, ...)
    segment_s: float = 0.0  # of `seconds`: layout analysis of page scans (jobs.htr.pages)
    segmented: int = 0  # page images (scan frames) segmented
    engine: str = "crnn"  # the model's: crnn (gpuhire's model.pt) or kraken

    @property
    def recognise_s(self) -> float:
        """Seconds spent recognising lines (layout analysis left out)."""
        return max(0.0, self.seconds - self.segment_s)

    @property
    def lines_per_s(self) -> float:
        """Recognised lines per second of recognition time (layout analysis left out)."""
        return self.lines / self.recognise_s if self.recognise_s > 0 else 0.0

    def summary(self) -> str:
        """One line for people (plus skipped samples, if any)."""
        head = (f"recognised {self.lines} lines in {self.files} files in {self.seconds:.1f} s "
                f"({self.lines_per_s:.1f} lines/s on {self.device}{', int8' if self.int8 else ''})")
        if self.segmented:
            head += (f"; {self.segmented} page images segmented in {self.segment_s:.1f} s "
                     f"({self.segment_s / self.segmented:.1f} s/page)")
        return head + (f"\n{self.gt.summary()}" if self.gt.skipped else "")


def quantize_int8(model: CRNN) -> nn.Module:
    """Dynamic int8 quantisation of the LSTM and Linear layers (weights int8, activations on the fly)."""
    import warnings

    # torch 2.13 marks torch.ao.quantization deprecated in favour of torchao (not in this image);
    # the eager dynamic path still works and is what int8 CPU inference of LSTMs needs today.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def _files(samples: Iterator[LineSample]) -> Iterator[list[LineSample]]:
    """Group consecutive lines of the same source file (the readers yield them file by file)."""
    group: list[LineSample] = []
    for s in samples:
        if group and s.source != group[0].source:
            yield group
            group = []
        group.append(s)
    if group:
        yield group


def _chunks(files: Iterator[list[LineSample]]) -> Iterator[list[list[LineSample]]]:
    chunk: list[list[LineSample]] = []
    for f in files:
        chunk.append(f)
        if sum(len(g) for g in chunk) >= CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@torch.no_grad()
def recognise_lines(net: nn.Module, frames: Callable[[torch.Tensor], torch.Tensor], images: list[np.ndarray],
                    codec: list[str], device: torch.device, precision: str) -> list[tuple[str, float]]:
    """Text and confidence of each height-normalised line image, batched by width."""
    widths = np.array([im.shape[1] for im in images])
    results: list[tuple[str, float]] = [("", 0.0)] * len(images)
    dtype = autocast_dtype(precision)
    height = images[0].shape[0] if images else 1
    for ids in make_batches(np.arange(len(images)), widths, height, BATCH_PIXELS, MAX_BATCH, None):
        batch, _, _, w, _ = collate([(images[i], [], i) for i in ids])
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            log_probs = net(batch.to(device))
        for i, res in zip(ids, greedy_decode(log_probs, frames(w), codec), strict=True):
            results[i] = res
    return results


def _output(out_dir: Path, sample: LineSample, suffix: str | None = None) -> Path:
    # An XML line's key is `<file>#<line id>` (ids cannot hold a '#'; file names can); a line
    # image's key is its file name, whatever it holds.
    rel = Path(sample.key.rsplit("#", 1)[0] if sample.format in ("page", "alto") else sample.key)
    path = out_dir / (rel.with_suffix(suffix) if suffix else rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_file(out_dir: Path, lines: list[LineSample], results: list[tuple[str, float]]) -> list[Path]:
    first = lines[0]
    txt = _output(out_dir, first, ".txt")
    txt.write_text("".join(text + "\n" for text, _ in results), encoding="utf-8")
    if first.format not in ("page", "alto"):
        return [txt]
    xml = _output(out_dir, first)
    pairs = list(zip(lines, results, strict=True))
    write_text(first.source, first.format, {s.line_id: r[0] for s, r in pairs}, xml,
               confidences={s.line_id: r[1] for s, r in pairs})
    return [xml, txt]


class CrnnLines:
    """gpuhire's own CRNN (RUN/model.pt), recognising height-normalised line images."""

    engine = "crnn"

    def __init__(self, path: Path, device: torch.device, int8: bool = False) -> None:
        self.model, self.codec, _ = load_exported(Path(path), device)
        self.net: nn.Module = quantize_int8(self.model) if int8 else self.model

    def recognise(self, images: list[np.ndarray], device: torch.device, precision: str,
                  boxes: list[bool] | None = None) -> list[tuple[str, float]]:
        fitted = [fit_height(im, self.model.height) for im in images]
        return recognise_lines(self.net, self.model.frames, fitted, self.codec, device, precision)


class LineModel(Protocol):
    """A loaded recognition model: line images in, (text, confidence) out."""

    engine: str  # "crnn" or "kraken"

    def recognise(self, images: list[np.ndarray], device: torch.device, precision: str,
                  boxes: list[bool] | None = None) -> list[tuple[str, float]]: ...


def open_line_model(path: Path, device: torch.device | str = "cpu") -> LineModel:
    """The recognition model in `path` on `device`, gpuhire's or kraken's, told apart by the file's
    contents (jobs.htr.kraken_recognise.model_engine); one HtrError line for anything else."""
    from jobs.htr.kraken_recognise import EXPECTED, GIVE, kraken_lines, model_engine

    path = Path(path)
    device = torch.device(device)
    if not path.is_file() or path.stat().st_size == 0 or zipfile.is_zipfile(path):
        return CrnnLines(path, device)  # gpuhire's model, or read_model_file's own error line
    if model_engine(path) == "kraken":
        return kraken_lines(path, device)
    if path.suffix.lower() in (".pt", ".pth"):  # meant as gpuhire's: its loader says what it is
        return CrnnLines(path, device)
    raise HtrError(f"{path} is neither {EXPECTED}", GIVE)


def check_model(model_path: Path) -> str:
    """Load `model_path` on the CPU as `Recogniser` would (gpuhire's model.pt or a kraken
    recognition model); one HtrError line for anything else. Returns the engine it is."""
    return open_line_model(Path(model_path), "cpu").engine


class Recogniser:
    """The model loaded once, for several `run`s over staged folders (see jobs.htr.pages).

    The model is gpuhire's model.pt or a kraken recognition model (.mlmodel, .safetensors):
    jobs.htr.kraken_recognise decides which by reading the file."""

    def __init__(self, model_path: Path, *, int8: bool = False, device: str = "auto") -> None:
        from jobs.htr.kraken_recognise import model_engine

        self.device = pick_device(device)
        if int8 and self.device.type != "cpu":
            raise HtrError("int8 quantisation runs on the CPU only", "drop --int8, or add --device cpu")
        if int8 and model_engine(Path(model_path)) == "kraken":
            raise HtrError("--int8 quantises gpuhire's own models only, not kraken models",
                           "drop --int8 for a kraken model")
        if self.device.type == "cpu":
            set_cpu_threads()
        self.lines: LineModel = (CrnnLines(Path(model_path), self.device, int8) if int8
                                 else open_line_model(Path(model_path), self.device))
        self.precision = pick_precision(self.device)
        self.report = InferReport(device=str(self.device), int8=int8, engine=self.lines.engine)

    def run(self, inputs: Sequence[Path], out_dir: Path,
            progress: Callable[[InferProgress], None] | None = None) -> InferReport:
        """Recognise every line under `inputs` into `out_dir`; adds to (and returns) `self.report`."""
        started = time.monotonic()
        report = self.report
        out_dir = Path(out_dir)
        samples = iter_lines_for_inference([Path(p) for p in inputs], report=report.gt)
        for chunk in _chunks(_files(samples)):
            images = [s.image for f in chunk for s in f]
            boxes = [s.format not in ("page", "alto") for f in chunk for s in f]  # bare line images
            results = self.lines.recognise(images, self.device, self.precision, boxes)
            k = 0
            for lines in chunk:
                report.outputs += _write_file(out_dir, lines, results[k:k + len(lines)])
                k += len(lines)
                report.files += 1
                report.lines += len(lines)
                if progress is not None:
                    progress(InferProgress(lines[0].source, report.files, report.lines))
        report.seconds += time.monotonic() - started
        return report


def recognise(model_path: Path, inputs: Sequence[Path], out_dir: Path, *, int8: bool = False,
              progress: Callable[[InferProgress], None] | None = None, device: str = "auto",
              allow_empty: bool = False) -> InferReport:
    """Recognise every line under `inputs` and write the results under `out_dir` (see the module doc).

    Raises GroundTruthError when no line at all was usable, unless `allow_empty` (a fleet worker
    reports per page instead: see jobs.htr.pages.settle).
    """
    started = time.monotonic()
    recogniser = Recogniser(model_path, int8=int8, device=device)
    report = recogniser.run(inputs, out_dir, progress)
    report.seconds = time.monotonic() - started
    if not report.lines and not allow_empty:
        report.gt.raise_if_empty([Path(p) for p in inputs])
    return report
