"""Read ground truth (PAGE XML, ALTO, image + .gt.txt pairs) into `LineSample`s.

Inputs are files or directories (walked recursively, in sorted order so that every run sees
the same lines in the same order): `*.xml` files are PAGE or ALTO by their root namespace,
`*.gt.txt` files pair with the image of the same stem (`foo.gt.txt` + `foo.png`).

Bad samples never stop a run. Each is skipped and recorded in a `GtReport` by file, line and
reason (see `REASONS`); only when nothing usable is left does `check_ground_truth` /
`GtReport.raise_if_empty` raise `GroundTruthError`.

Each page image is decoded once and only while its lines are cut out, so memory stays at one
page however large the set.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.htr.errors import GroundTruthError
from jobs.htr.files import GT_SUFFIX, discover, pair_image_of, resolve_page_image
from jobs.htr.formats import LineRecord, XmlDocument, XmlFormatError, parse_xml
from jobs.htr.lineimage import crop_line, load_gray, to_gray

NORMALIZATIONS = ("NFC", "NFD", "NFKC", "NFKD", "none")

# Why a sample was skipped. File-level reasons (broken-xml, unknown-format) count files;
# the others count lines.
REASONS = {
    "broken-xml": "the XML file is not well-formed",
    "unknown-format": "the XML file is neither PAGE nor ALTO",
    "missing-image": "the image the line refers to does not exist",
    "unreadable-image": "the image exists but cannot be decoded",
    "unreadable-text": "the .gt.txt file is not UTF-8 text",
    "empty-text": "the line has no transcription (or only whitespace)",
    "no-geometry": "the line has neither a polygon nor a bounding box",
    "outside-page": "the line's outline lies outside the page image",
    "degenerate-line": "the line is over 150 times wider than high (an outline that is only a baseline?)",
}
MAX_ASPECT = 150  # a 64 px line of 9,600 px: longer than any real line, and would blow up a batch


def _shape_problem(image: np.ndarray) -> str | None:
    """The skip reason for a cut-out line that no recogniser should see, else None."""
    height, width = image.shape
    if min(height, width) < 2:
        return "outside-page"
    if width > MAX_ASPECT * height:
        return "degenerate-line"
    return None


@dataclass
class LineSample:
    """One line of ground truth (or of input to recognise), cut out of its image."""

    source: Path  # the XML or .gt.txt file (for a bare line image: the image)
    line_id: str  # the line's id in its file (pairs and images: the file stem)
    index: int  # 0-based position of the line in its file
    text: str | None  # normalised transcription; None when the input has none (inference)
    image: np.ndarray  # (H, W) uint8 crop at the source's resolution, 255 = background
    image_path: Path  # the page (or line) image it was cut from
    format: str  # "page", "alto", "pair" or "image"
    key: str  # unique id within one read: "<file relative to its input>#<line id>"


@dataclass(frozen=True)
class SkippedSample:
    """One skipped file or line."""

    file: str
    line: str | None  # None: the whole file
    reason: str  # a key of REASONS
    detail: str = ""


@dataclass
class GtReport:
    """What a read found: files, usable lines and every skipped sample with its reason."""

    files: int = 0  # input files opened (XML and .gt.txt)
    lines: int = 0  # usable lines
    skipped: list[SkippedSample] = field(default_factory=list)

    def skip(self, file: Path | str, line: str | None, reason: str, detail: str = "") -> None:
        """Record one skipped sample."""
        self.skipped.append(SkippedSample(str(file), line, reason, detail))

    @property
    def counts(self) -> dict[str, int]:
        """Skipped samples by reason, sorted by reason."""
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))

    def summary(self, limit: int = 20) -> str:
        """A few lines for people: totals, counts by reason, the first `limit` skipped samples."""
        out = [f"{self.lines} usable lines from {self.files} files, {len(self.skipped)} skipped"]
        out += [f"  {reason}: {n} ({REASONS.get(reason, '')})" for reason, n in self.counts.items()]
        for s in self.skipped[:limit]:
            where = f"{s.file}" + (f" line {s.line}" if s.line is not None else "")
            out.append(f"  skipped {where}: {s.reason}" + (f" ({s.detail})" if s.detail else ""))
        if len(self.skipped) > limit:
            out.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(out)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the compile step stores it as report.json)."""
        return {"files": self.files, "lines": self.lines, "skipped_total": len(self.skipped),
                "counts": self.counts,
                "skipped": [{"file": s.file, "line": s.line, "reason": s.reason, "detail": s.detail}
                            for s in self.skipped]}

    def raise_if_empty(self, inputs: Sequence[Path]) -> None:
        """Raise GroundTruthError naming what went wrong when no line is usable."""
        if self.lines:
            return
        names = ", ".join(str(p) for p in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        if not self.files and not self.skipped:
            raise GroundTruthError(f"no ground truth found in {names}",
                                   "give PAGE/ALTO *.xml files with their images, or image + .gt.txt "
                                   "pairs (python -m jobs.htr synth makes a sample set)")
        top = ", ".join(f"{r}: {n}" for r, n in self.counts.items())
        first: dict[str, SkippedSample] = {}  # the first skipped sample of the first two files
        for s in self.skipped:
            if len(first) < 2:
                first.setdefault(s.file, s)
        named = "; ".join(_describe(s) for s in first.values())
        raise GroundTruthError(f"no usable line in {names} ({len(self.skipped)} skipped: {top}; "
                               f"first: {named})",
                               "fix those files (images next to the XML, non-empty transcriptions) "
                               "and run again")


def _describe(s: SkippedSample) -> str:
    """One skipped sample in words: where, why, and the detail (the image it looked for...)."""
    where = s.file + (f" line {s.line}" if s.line is not None else "")
    why = REASONS.get(s.reason, s.reason)
    return f"{where}: {s.reason}, {why}" + (f" ({s.detail})" if s.detail else "")


def normalize_text(text: str, normalization: str = "NFC") -> str:
    """Unicode-normalise `text` and collapse runs of whitespace to one space."""
    if normalization not in NORMALIZATIONS:
        raise GroundTruthError(f"unknown Unicode normalization {normalization!r}",
                               f"use one of {', '.join(NORMALIZATIONS)}")
    if normalization != "none":
        text = unicodedata.normalize(normalization, text)  # type: ignore[arg-type]
    return " ".join(text.split())


# ---------------------------------------------------------------- reading


def _unit_scale(doc: XmlDocument, page: np.ndarray, dpi: float | None) -> tuple[float, float]:
    """(x, y) factors from document units to pixels of the image actually found.

    ALTO may measure in 1/10 mm or 1/1200 inch; and an XML written for the full-size scan is
    often shipped with a smaller image: the page size the XML states against the real image
    size is the safest scale whenever the two differ.
    """
    height, width = page.shape
    if doc.width and doc.height and (doc.unit != "pixel" or (doc.width, doc.height) != (width, height)):
        sx, sy = width / doc.width, height / doc.height
        if abs(sx / sy - 1.0) < 0.02:  # same shape, other size; else the stated size is wrong
            return sx, sy
    if doc.unit == "pixel":
        return 1.0, 1.0
    per_inch = {"mm10": 254.0, "inch1200": 1200.0}.get(doc.unit, 1.0)
    factor = (dpi or 300.0) / per_inch
    return factor, factor


def _scaled(rec: LineRecord, scale: tuple[float, float]) -> LineRecord:
    if scale == (1.0, 1.0):
        return rec
    sx, sy = scale
    poly = tuple((x * sx, y * sy) for x, y in rec.polygon) if rec.polygon else None
    box = (rec.bbox[0] * sx, rec.bbox[1] * sy, rec.bbox[2] * sx, rec.bbox[3] * sy) if rec.bbox else None
    return LineRecord(rec.line_id, rec.index, rec.text, poly, box, rec.baseline)


def _wanted_lines(doc: XmlDocument, normalization: str, report: GtReport,
                  require_text: bool) -> list[tuple[LineRecord, str | None]]:
    """The lines worth cutting out, with their normalised text; the others go into `report`."""
    wanted: list[tuple[LineRecord, str | None]] = []
    for rec in doc.lines:
        text = normalize_text(rec.text, normalization) if rec.text is not None else None
        if require_text and not text:
            report.skip(doc.path, rec.line_id, "empty-text")
        elif rec.bbox is None:
            report.skip(doc.path, rec.line_id, "no-geometry")
        else:
            wanted.append((rec, text))
    return wanted


def _page_of(doc: XmlDocument, wanted: list[tuple[LineRecord, str | None]],
             report: GtReport) -> tuple[Path, np.ndarray, float | None] | None:
    """(image path, decoded page, dpi); None, with every wanted line reported, when unusable."""
    image_path = resolve_page_image(doc)
    if image_path is None:
        for rec, _ in wanted:
            report.skip(doc.path, rec.line_id, "missing-image", doc.image_ref or "no imageFilename")
        return None
    try:
        page, dpi = load_gray(image_path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        for rec, _ in wanted:
            report.skip(doc.path, rec.line_id, "unreadable-image", f"{image_path.name}: {exc}")
        return None
    return image_path, page, dpi


def _xml_samples(path: Path, rel: str, normalization: str, report: GtReport,
                 require_text: bool) -> Iterator[LineSample]:
    try:
        doc = parse_xml(path)
    except XmlFormatError as exc:
        report.skip(path, None, exc.reason, exc.detail)
        return
    report.files += 1
    wanted = _wanted_lines(doc, normalization, report, require_text)
    found = _page_of(doc, wanted, report) if wanted else None  # no text, no need to decode
    if found is None:
        return
    image_path, page, dpi = found
    scale = _unit_scale(doc, page, dpi)
    seen: Counter[str] = Counter()
    for rec, text in wanted:
        geo = _scaled(rec, scale)
        crop = crop_line(page, geo.polygon, geo.bbox)
        if crop is None:
            report.skip(path, rec.line_id, "outside-page", f"page is {page.shape[1]}x{page.shape[0]} px")
            continue
        problem = _shape_problem(crop)
        if problem is not None:
            report.skip(path, rec.line_id, problem, f"line is {crop.shape[1]}x{crop.shape[0]} px")
            continue
        report.lines += 1
        seen[rec.line_id] += 1  # ids should be unique in a file; keys must be
        suffix = f"~{seen[rec.line_id]}" if seen[rec.line_id] > 1 else ""
        yield LineSample(source=path, line_id=rec.line_id, index=rec.index, text=text, image=crop,
                         image_path=image_path, format=doc.format, key=f"{rel}#{rec.line_id}{suffix}")


def _pair_sample(path: Path, rel: str, normalization: str, report: GtReport) -> LineSample | None:
    report.files += 1
    stem_id = path.name[: -len(GT_SUFFIX)]
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        report.skip(path, stem_id, "unreadable-text", str(exc))
        return None
    text = normalize_text(raw, normalization)
    if not text:
        report.skip(path, stem_id, "empty-text")
        return None
    image_path = pair_image_of(path)
    if image_path is None:
        report.skip(path, stem_id, "missing-image", f"no {stem_id}.png/.jpg/.tif next to it")
        return None
    return _whole_image(path, stem_id, text, image_path, "pair", rel[: -len(GT_SUFFIX)], report)


def _whole_image(source: Path, line_id: str, text: str | None, image_path: Path, fmt: str, key: str,
                 report: GtReport) -> LineSample | None:
    try:
        with Image.open(image_path) as image:
            array = to_gray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        report.skip(source, line_id, "unreadable-image", f"{image_path.name}: {exc}")
        return None
    problem = _shape_problem(array)
    if problem is not None:
        report.skip(source, line_id, problem, f"image is {array.shape[1]}x{array.shape[0]} px")
        return None
    report.lines += 1
    return LineSample(source=source, line_id=line_id, index=0, text=text, image=array,
                      image_path=image_path, format=fmt, key=key)


def iter_samples(inputs: Sequence[Path], *, normalization: str = "NFC",
                 report: GtReport | None = None) -> Iterator[LineSample]:
    """Yield every usable ground-truth line under `inputs`; bad samples go into `report`.

    Does not raise when nothing is usable: call `report.raise_if_empty(inputs)` afterwards
    (or use `check_ground_truth`).
    """
    normalize_text("", normalization)  # reject an unknown form before any work
    report = report if report is not None else GtReport()
    for path, rel, kind in discover(inputs):
        yield from read_file(path, rel, kind, normalization=normalization, report=report)


def read_file(path: Path, rel: str, kind: str, *, normalization: str,
              report: GtReport) -> Iterator[LineSample]:
    """The usable lines of one ground-truth file, as `discover` lists it (path, key base, kind)."""
    if kind == "xml":
        yield from _xml_samples(path, rel, normalization, report, require_text=True)
    elif kind == "pair":
        sample = _pair_sample(path, rel, normalization, report)
        if sample is not None:
            yield sample


def check_ground_truth(inputs: Sequence[Path], *, normalization: str = "NFC") -> GtReport:
    """Read everything once (images included) and return the report; raise when nothing is usable."""
    report = GtReport()
    for _ in iter_samples(inputs, normalization=normalization, report=report):
        pass
    report.raise_if_empty(inputs)
    return report


def load_ground_truth(inputs: Sequence[Path], *,
                      normalization: str = "NFC") -> tuple[list[LineSample], GtReport]:
    """All samples in memory (small sets and tests; `compile_dataset` streams instead)."""
    report = GtReport()
    samples = list(iter_samples(inputs, normalization=normalization, report=report))
    report.raise_if_empty(inputs)
    return samples, report


def iter_lines_for_inference(paths: Sequence[Path], *, normalization: str = "NFC",
                             report: GtReport | None = None) -> Iterator[LineSample]:
    """Lines to recognise: every TextLine of PAGE/ALTO files (text or not) and bare line images.

    An image that one of the XML files refers to is its page, not a line, and is not yielded
    on its own. `LineSample.text` holds the existing transcription, if any.
    """
    report = report if report is not None else GtReport()
    entries = discover(paths, inference=True)
    pages: set[Path] = set()
    for path, _, kind in entries:
        if kind == "xml":
            try:
                found = resolve_page_image(parse_xml(path))
            except XmlFormatError:
                continue
            if found is not None:
                pages.add(found.resolve())
    for path, rel, kind in entries:
        if kind == "xml":
            yield from _xml_samples(path, rel, normalization, report, require_text=False)
        elif path.resolve() not in pages:
            stem = path.name.split(".", 1)[0]
            sample = _whole_image(path, stem, None, path, "image", rel, report)
            if sample is not None:
                yield sample
