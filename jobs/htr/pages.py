"""Pages for inference: the unit of work a planner counts and a fleet ships.

A page is one PAGE/ALTO file with its image, or one bare line image. `list_pages` finds them
under the inputs in the same stable order as `recognise` reads them (the same `discover`), each
with its key (the path relative to the input it came from), so a page keeps its name from the
input folder to the output folder wherever it was recognised. `stage_pages` lays pages out as
`DIR/<key>` with the page image next to its XML: the layout `recognise` reads, on this machine
(links) or on a fleet worker (downloaded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jobs.htr.files import discover, resolve_page_image
from jobs.htr.formats import XmlFormatError, parse_xml

LINES_SAMPLE = 40  # XML files read to estimate lines per page (reading all of 100,000 is slow)


@dataclass(frozen=True)
class Page:
    """One page to recognise."""

    key: str  # path relative to its input (posix): names its outputs
    path: Path  # the XML file, or the line image
    kind: str  # "xml" or "image"
    image: Path | None  # the page image of an XML file (None if it cannot be found)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Relative paths `recognise` writes for this page: the XML copy, then the plain text."""
        txt = PurePosixPath(self.key).with_suffix(".txt").as_posix()
        return (self.key, txt) if self.kind == "xml" else (txt,)

    def files(self) -> list[tuple[Path, str]]:
        """(local file, relative name) to ship: the page and, for XML, its image beside it."""
        out = [(self.path, self.key)]
        if self.kind == "xml" and self.image is not None:
            out.append((self.image, (PurePosixPath(self.key).parent / self.image.name).as_posix()))
        return out

    def signature(self) -> str:
        """Size and modification time of the page's files: changes when the input changes."""
        parts = []
        for path, _ in self.files():
            try:
                st = path.stat()
            except OSError:
                parts.append("missing")
                continue
            parts.append(f"{st.st_size}:{st.st_mtime_ns}")
        return "/".join(parts)


def list_pages(inputs: Sequence[Path]) -> list[Page]:
    """Every page under `inputs`; an image that an XML file refers to is its page, not a line.

    Raises GroundTruthError for an input path that does not exist.
    """
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
            pages.append(Page(key, path, "image", None))
    _check_outputs(pages)
    return pages


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
    """Text lines on one page (an unreadable XML counts 0; a line image is 1)."""
    if page.kind == "image":
        return 1
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


@dataclass(frozen=True)
class PageOutcome:
    """What became of one page after `recognise` ran over its staged folder."""

    key: str
    ok: bool
    lines: int  # lines recognised on it
    reason: str = ""  # why it failed: the first skipped sample's reason and detail


def settle(pages: Sequence[Page], staged: Path, out_dir: Path, skipped: Sequence[object],
           lines_by_file: dict[str, int]) -> list[PageOutcome]:
    """Decide each page's outcome after `recognise(staged -> out_dir, allow_empty=True)`.

    A page with outputs is done. A page without any and with skipped samples (a missing or
    corrupt image, broken XML) failed, with the first reason. A page without lines and without
    problems (an XML with no TextLine) is done too: its XML is copied unchanged and its text
    file is empty, so every page has its outputs.
    """
    # the readers name the staged copies (a temporary folder): name the user's own files instead,
    # or, where the staged copy is all there is (a fleet worker), the name relative to the input
    names = {str(staged / rel): (str(source) if source != staged / rel else rel)
             for page in pages for source, rel in page.files()}
    problems: dict[str, str] = {}
    for s in skipped:
        file = str(getattr(s, "file", ""))
        if file not in problems:
            detail = getattr(s, "detail", "")
            text = f"{getattr(s, 'reason', 'skipped')}" + (f": {detail}" if detail else "")
            for staged_name, own in sorted(names.items(), key=lambda kv: -len(kv[0])):  # longest first
                text = text.replace(staged_name, own)
            problems[file] = text
    outcomes = []
    for page in pages:
        source = str(staged / page.key)
        outputs = [out_dir / rel for rel in page.outputs]
        if source in problems and source not in lines_by_file:
            outcomes.append(PageOutcome(page.key, False, 0, problems[source]))
        elif all(p.exists() for p in outputs):
            outcomes.append(PageOutcome(page.key, True, lines_by_file.get(source, 0)))
        else:
            for rel, target in zip(page.outputs, outputs, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                if rel.endswith(".txt"):
                    target.write_text("", encoding="utf-8")
                else:
                    target.write_bytes((staged / page.key).read_bytes())
            outcomes.append(PageOutcome(page.key, True, 0))
    return outcomes


def recognise_pages(model: Path, pages: Sequence[Page], work: Path, out_dir: Path, *,
                    int8: bool = False, device: str = "auto",
                    on_page: Callable[[PageOutcome], None] | None = None) -> tuple[object, list[PageOutcome]]:
    """Recognise `pages` (staged under `work/in` unless already there) into `out_dir`.

    Returns the InferReport and each page's outcome; `on_page` is called as each file is
    written (the local path's progress bar), failed and empty pages at the end.
    """
    from jobs.htr.infer import InferProgress, recognise

    staged = work / "in"
    if not all((staged / p.key).exists() for p in pages):
        stage_pages(pages, staged)
    for page in pages:  # outputs of an earlier run must not pass for this one's
        for rel in page.outputs:
            (out_dir / rel).unlink(missing_ok=True)
    lines_by_file: dict[str, int] = {}
    done = [0]

    keys = {str(staged / p.key) for p in pages}

    def progress(p: InferProgress) -> None:
        lines_by_file[str(p.file)] = p.lines_done - done[0]
        done[0] = p.lines_done
        if on_page is not None and str(p.file) in keys:
            on_page(PageOutcome(Path(p.file).relative_to(staged).as_posix(), True,
                                lines_by_file[str(p.file)]))

    report = recognise(model, [staged], out_dir, int8=int8, device=device, progress=progress,
                       allow_empty=True)
    outcomes = settle(pages, staged, out_dir, report.gt.skipped, lines_by_file)
    if on_page is not None:
        for o in outcomes:
            if str(staged / o.key) not in lines_by_file:
                on_page(o)
    return report, outcomes
