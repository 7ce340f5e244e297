"""Pages for inference: the unit of work a planner counts and a fleet ships.

A page is one PAGE/ALTO file with its image, one bare line image, or one page scan: an image
(JPEG, PNG, TIFF, every frame of a multi-page TIFF, every page of a PDF) with no XML beside it,
which layout analysis segments first (jobs.htr.scanpages). Which images are scans: `--input
auto` asks jobs.htr.scans.classify (a line image is short and wide), `--input pages` takes
every image for a scan, `--input lines` none (a PDF is always a scan). `list_pages` finds them
under the inputs in the same stable order as `recognise` reads them (the same `discover`), each
with its key (the path relative to the input it came from), so a page keeps its name from the
input folder to the output folder wherever it was recognised. `stage_pages` lays pages out as
`DIR/<key>` with the page image next to its XML: the layout `recognise` reads, on this machine
(links) or on a fleet worker (downloaded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from jobs.htr.files import SCAN_ONLY_SUFFIXES, discover, resolve_page_image
from jobs.htr.formats import XmlFormatError, parse_xml
from jobs.htr.pagework import Page, PageOutcome, no_lines, problems_by_file, staged_names

__all__ = ["Page", "PageOutcome", "estimate_lines", "lines_in", "list_pages", "probe", "recognise_pages",
           "settle", "stage_pages"]

if TYPE_CHECKING:
    from jobs.htr.infer import InferReport

LINES_SAMPLE = 40  # XML files read to estimate lines per page (reading all of 100,000 is slow)
SCAN_LINES = 30  # lines a scan frame is counted for until its layout is known
INPUT_MODES = ("auto", "pages", "lines")
OUTPUT_FORMATS = ("page", "alto")


def list_pages(inputs: Sequence[Path], mode: str = "auto") -> list[Page]:
    """Every page under `inputs`; an image that an XML file refers to is its page, not a line.

    `mode` (auto | pages | lines) says which other images are scans (see the module doc).
    Raises GroundTruthError for an input path that does not exist.
    """
    if mode not in INPUT_MODES:
        raise ValueError(f"input mode {mode!r}: use one of {INPUT_MODES}")
    entries = discover(inputs, inference=True)
    xml_images: dict[Path, Path | None] = {}
    taken: set[Path] = set()  # images that are pages of XML files, not lines of their own
    for path, _, kind in entries:
        if kind == "xml":
            try:
                xml_images[path] = resolve_page_image(parse_xml(path))
            except XmlFormatError:  # recognise reports it (broken-xml); the page still counts
                xml_images[path] = None
                beside = _same_stem_image(path)  # most likely its image: not a line either
                if beside is not None:
                    taken.add(beside.resolve())
    taken |= {img.resolve() for img in xml_images.values() if img is not None}
    pages = []
    for path, key, kind in entries:
        if kind == "xml":
            pages.append(Page(key, path, "xml", xml_images[path]))
        elif path.resolve() not in taken:
            pages.append(probe(key, path, mode))
    _check_outputs(pages)
    return pages


def probe(key: str, path: Path, mode: str = "auto") -> Page:
    """A line image or a scan, from the file's header only (no pixel is decoded).

    A file that cannot be opened is a scan unless `mode` is lines: reading it then says why
    (not an image, corrupt, empty); one larger than jobs.htr.scans' limits is a scan too, so that
    it is refused by name. A scan is rendered (PNG beside its XML) when it has several frames,
    is a PDF, or carries an EXIF rotation: the XML's coordinates are those of the upright frame.
    """
    if path.name.lower().endswith(SCAN_ONLY_SUFFIXES):
        return Page(key, path, "scan", None, _pdf_pages(path), True)
    if mode == "lines":
        return Page(key, path, "image", None)
    from PIL import Image

    from jobs.htr.scans import MAX_PIXELS, MAX_SIDE_PX, classify

    try:
        with Image.open(path) as image:
            width, height = image.size
            frames = max(1, int(getattr(image, "n_frames", 1)))
            rotated = image.getexif().get(0x0112, 1) not in (0, 1)
            huge = width * height > MAX_PIXELS or max(width, height) > MAX_SIDE_PX
            scan = mode == "pages" or huge or frames > 1 or classify(image) == "page"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return Page(key, path, "scan", None)
    if not scan:
        return Page(key, path, "image", None)
    return Page(key, path, "scan", None, frames, frames > 1 or rotated)


def _pdf_pages(path: Path) -> int:
    """Pages of a PDF (1 when it cannot be read: reading it later says why)."""
    try:
        import pypdfium2  # type: ignore[import-not-found,import-untyped,unused-ignore]

        doc = pypdfium2.PdfDocument(str(path))
        try:
            return max(1, len(doc))
        finally:
            doc.close()
    except Exception:  # not installed, not a PDF, encrypted: jobs.htr.scans.read_scan names it
        return 1


def _check_outputs(pages: Sequence[Page]) -> None:
    """Two pages must never write the same output (`a.png` and `a.jpg` both make `a.txt`; the
    same name under two inputs makes `a.png~2`): refuse them rather than lose one."""
    from jobs.htr.errors import GroundTruthError

    writers: dict[str, Page] = {}
    for page in pages:
        if "~" in PurePosixPath(page.key).suffix:
            raise GroundTruthError(f"{page.path} has the same relative name as another input's page",
                                   "give the inputs' common parent folder instead, or run them separately")
        for rel in page.outputs:
            other = writers.setdefault(rel, page)
            if other is not page:
                raise GroundTruthError(f"{other.path} and {page.path} would both write {rel}",
                                       "rename one of them, or recognise them in separate runs")


def _same_stem_image(xml: Path) -> Path | None:
    """The image beside an XML file that cannot be read (so its own reference is unknown)."""
    from jobs.htr.files import IMAGE_SUFFIXES

    stem = xml.name[: -len(".xml")]
    for suffix in IMAGE_SUFFIXES:
        for candidate in (xml.with_name(stem + suffix), xml.with_name(stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def lines_in(page: Page) -> int:
    """Text lines on one page (an unreadable XML counts 0; a line image is 1; a scan SCAN_LINES
    per frame, until segmented)."""
    if page.kind == "image":
        return 1
    if page.kind == "scan":
        return SCAN_LINES * page.frames
    try:
        return len(parse_xml(page.path).lines)
    except XmlFormatError:
        return 0


def estimate_lines(pages: Sequence[Page], sample: int = LINES_SAMPLE) -> int:
    """Total lines, counted on up to `sample` evenly spaced pages and scaled to all of them."""
    if not pages:
        return 0
    step = max(1, len(pages) // sample)
    picked = list(pages[::step])[:sample]
    counted = sum(lines_in(p) for p in picked)
    return round(counted * len(pages) / len(picked))


def stage_pages(pages: Sequence[Page], folder: Path) -> None:
    """Link `pages` into `folder` as `<key>` (and the image beside each XML) for `recognise`."""
    for page in pages:
        for source, rel in page.files():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            try:
                os.symlink(source.resolve(), target)
            except OSError:  # no symlinks here (some filesystems): copy instead
                import shutil

                shutil.copyfile(source, target)


def settle(pages: Sequence[Page], staged: Path, out_dir: Path, skipped: Sequence[object],
           lines_by_file: dict[str, int], work: Path | None = None) -> list[PageOutcome]:
    """Decide each XML page's and line image's outcome after `Recogniser.run(staged -> out_dir)`.

    A page with outputs and lines is done. A page without lines failed: with the first skipped
    sample's reason (a missing or corrupt image, broken XML), or `no-lines` (an XML file with no
    TextLine: never an empty success; it stays out of the output and is tried again on a rerun).
    """
    names = staged_names(pages, staged, work)
    problems = problems_by_file(skipped, names)
    outcomes = []
    for page in pages:
        source = str(staged / page.key)
        outputs = [out_dir / rel for rel in page.outputs]
        lines = lines_by_file.get(source, 0)
        if lines and all(p.exists() for p in outputs):
            outcomes.append(PageOutcome(page.key, True, lines))
            continue
        for target in outputs:  # no half page passes for a done one
            target.unlink(missing_ok=True)
        outcomes.append(PageOutcome(page.key, False, 0, problems.get(source) or no_lines(page, names)))
    return outcomes


def recognise_pages(model: Path, pages: Sequence[Page], work: Path, out_dir: Path, *,
                    int8: bool = False, device: str = "auto", fmt: str = "page",
                    segment_model: Path | None = None,
                    on_page: Callable[[PageOutcome], None] | None = None,
                    ) -> tuple[InferReport, list[PageOutcome]]:
    """Recognise `pages` into `out_dir`, working under `work` (a folder of the caller's).

    XML pages and line images first, linked under `work/plain` and read in one go; then the
    scans, a few at a time: segmented (jobs.htr.scanpages; the layout as PAGE or ALTO, `fmt`)
    and their lines read. Returns the InferReport (with the segmentation time) and each page's
    outcome; `on_page` is called as each page ends (the local path's progress bar and manifest).
    """
    from jobs.htr.infer import InferProgress, Recogniser
    from jobs.htr.scanpages import Segmenters, recognise_scans

    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"output format {fmt!r}: use one of {OUTPUT_FORMATS}")
    for page in pages:  # outputs of an earlier run must not pass for this one's
        for rel in page.outputs:
            (out_dir / rel).unlink(missing_ok=True)
    recogniser = Recogniser(model, int8=int8, device=device)
    outcomes: list[PageOutcome] = []
    plain = [p for p in pages if p.kind != "scan"]
    if plain:
        staged = work / "plain"
        stage_pages(plain, staged)
        lines_by_file: dict[str, int] = {}
        done = [recogniser.report.lines]
        keys = {str(staged / p.key): p.key for p in plain}

        def progress(p: InferProgress) -> None:
            lines_by_file[str(p.file)] = p.lines_done - done[0]
            done[0] = p.lines_done
            if on_page is not None and str(p.file) in keys and lines_by_file[str(p.file)]:
                on_page(PageOutcome(keys[str(p.file)], True, lines_by_file[str(p.file)]))

        gt = recogniser.report.gt
        first_skip = len(gt.skipped)
        recogniser.run([staged], out_dir, progress)
        settled = settle(plain, staged, out_dir, gt.skipped[first_skip:], lines_by_file, work)
        outcomes += settled
        if on_page is not None:
            for o in settled:
                if not (o.ok and lines_by_file.get(str(staged / o.key))):
                    on_page(o)
    scans = [p for p in pages if p.kind == "scan"]
    if scans:
        segmenters = Segmenters(segment_model, recogniser.device.type)
        outcomes += recognise_scans(recogniser, segmenters, scans, work / "scans", out_dir, fmt=fmt,
                                    work=work, on_page=on_page)
    return recogniser.report, outcomes
