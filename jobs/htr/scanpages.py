"""Page scans in a batch: layout analysis, then the lines read (called by jobs.htr.pages).

A few scans at a time (SCAN_GROUP), so that progress moves and memory stays small: each frame
of each scan (jobs.htr.scans.read_scan) is segmented (jobs.htr.segment, one Segmenter per
process, loaded once), and its layout written as `<stem><frame>.xml` (PAGE 2019 or ALTO 4) into
the group's folder beside the image it describes: a link to the scan itself, or, for a PDF page,
a frame of a multi-page file or an EXIF-rotated scan, the upright frame as `<stem><frame>.png`
(copied to the output folder too, so that the XML's imageFilename resolves there). The usual
XML path then reads the lines and writes the XML with TextEquiv and the plain text to OUT.

A scan that cannot be read, a blank page, or a page where no line is found fails by name
(`<reason>: <detail>`, jobs.htr.scans.ScanError): never an empty success. A multi-frame scan
fails as a whole when one frame fails (it is the unit the manifest and the fleet count), but the
frames that were read keep their outputs: nothing recognised is lost.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.htr.pagework import Page, PageOutcome, no_lines, problems_by_file, staged_names

if TYPE_CHECKING:
    from jobs.htr.infer import InferProgress, Recogniser

SCAN_GROUP = 4  # scans segmented, then read together: the progress moves every group
_LOADED: dict[tuple[str, str], Any] = {}  # one Segmenter per model and device in this process


class Segmenters:
    """The process's Segmenter for a model and device, loaded at the first frame that needs it."""

    def __init__(self, model: Path | None, device: str = "cpu") -> None:
        self.model = model
        self.device = "cuda" if device == "cuda" else "cpu"

    def get(self) -> Any:
        key = (str(self.model or ""), self.device)
        if key not in _LOADED:
            from jobs.htr.segment import Segmenter

            _LOADED[key] = Segmenter(self.model, device=self.device)
        return _LOADED[key]


@dataclass
class Segmented:
    """What segmenting one scan gave: the XML files written, the seconds, and any failure."""

    xmls: list[Path] = field(default_factory=list)
    pngs: list[tuple[Path, str]] = field(default_factory=list)  # rendered frame, its output name
    frames: int = 0  # frames that went through the segmenter
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)  # "<reason>: <detail>" per failed frame


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks here (some filesystems): copy instead
        shutil.copyfile(source, target)


def segment_scan(page: Page, folder: Path, segmenters: Segmenters, fmt: str = "page", *,
                 max_frames: int | None = None) -> Segmented:
    """Read `page`'s frames (the first `max_frames` only, for a calibration) and write each
    one's layout under `folder` (see the module doc)."""
    from jobs.htr.scans import ScanError, read_scan

    result = Segmented()
    try:
        frames = read_scan(page.path, max_frames=max_frames)
    except ScanError as exc:
        result.failures.append(f"{exc.reason}: {exc.detail}")
        return result
    from jobs.htr.segment import write_layout  # kraken's side: only once there is a page to segment

    count = frames[0].count if frames else 0
    if count != page.frames:
        result.failures.append(f"changed-file: {page.path.name} has {count} page(s), not "
                               f"{page.frames} as when it was listed: run again")
        return result
    stems = page.stems()
    for frame in frames:
        stem = stems[frame.index]
        started = time.monotonic()
        try:
            layout = segmenters.get().segment(frame.image)
        except ScanError as exc:
            where = f"page {frame.index + 1} of {frame.count}: " if frame.count > 1 else ""
            result.failures.append(f"{exc.reason}: {where}{exc.detail}")
            continue
        finally:
            result.seconds += time.monotonic() - started
            result.frames += 1
        xml = folder / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        if page.render:
            png = folder / f"{stem}.png"
            frame.image.save(png)
            result.pngs.append((png, f"{stem}.png"))
            image_name = png.name
        else:
            image_name = page.path.name
            _link(page.path, xml.parent / image_name)
        write_layout(layout, image_name, xml, fmt, model_name=segmenters.get().model_name)
        result.xmls.append(xml)
    return result


def recognise_scans(recogniser: Recogniser, segmenters: Segmenters, scans: Sequence[Page], root: Path,
                    out_dir: Path, *, fmt: str = "page", work: Path | None = None,
                    on_page: Callable[[PageOutcome], None] | None = None) -> list[PageOutcome]:
    """Segment and read `scans`, SCAN_GROUP at a time, each group under `root/<n>`."""
    outcomes: list[PageOutcome] = []
    for n, at in enumerate(range(0, len(scans), SCAN_GROUP)):
        for outcome in _group(recogniser, segmenters, scans[at:at + SCAN_GROUP], root / f"{n:05d}",
                              out_dir, fmt, work):
            outcomes.append(outcome)
            if on_page is not None:
                on_page(outcome)
    return outcomes


def _group(recogniser: Recogniser, segmenters: Segmenters, group: Sequence[Page], folder: Path,
           out_dir: Path, fmt: str, work: Path | None) -> list[PageOutcome]:
    report = recogniser.report
    segmented: dict[str, Segmented] = {}
    for page in group:
        segmented[page.key] = got = segment_scan(page, folder, segmenters, fmt)
        report.segment_s += got.seconds
        report.seconds += got.seconds
        report.segmented += got.frames
    lines_by_file: dict[str, int] = {}
    done = [report.lines]

    def progress(p: InferProgress) -> None:
        lines_by_file[str(p.file)] = p.lines_done - done[0]
        done[0] = p.lines_done

    first_skip = len(report.gt.skipped)
    if any(s.xmls for s in segmented.values()):
        recogniser.run([folder], out_dir, progress)
    names = staged_names(group, folder, work)
    for page in group:  # the frames' staged files read as the user's own file
        own = str(page.path) if work is None or not page.path.is_relative_to(work) else page.key
        for xml in segmented[page.key].xmls:
            names[str(xml)] = names[str(xml.with_name(page.path.name))] = own
    problems = problems_by_file(report.gt.skipped[first_skip:], names)
    return [_settle_scan(page, segmented[page.key], lines_by_file, problems, out_dir) for page in group]


def _settle_scan(page: Page, got: Segmented, lines_by_file: dict[str, int], problems: dict[str, str],
                 out_dir: Path) -> PageOutcome:
    """Done when every frame has lines and outputs; else failed with the first reason."""
    for png, rel in got.pngs:  # the frame images the XML files name, beside them in OUT
        if lines_by_file.get(str(png.with_suffix(".xml"))):
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
    lines = sum(lines_by_file.get(str(x), 0) for x in got.xmls)
    reasons = list(got.failures)
    for xml in got.xmls:
        if not lines_by_file.get(str(xml)):
            reasons.append(problems.get(str(xml)) or no_lines(page))
    if not reasons and all((out_dir / rel).exists() for rel in page.outputs):
        return PageOutcome(page.key, True, lines)
    if not got.failures and not got.xmls:
        reasons.append(no_lines(page))
    return PageOutcome(page.key, False, lines, reasons[0] if reasons else no_lines(page))
