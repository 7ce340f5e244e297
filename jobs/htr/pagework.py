"""A page to recognise and what became of it (jobs.htr.pages lists and reads them; the
fleet ships them; jobs.htr.scanpages segments the scans among them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jobs.htr.scans import frame_name


@dataclass(frozen=True)
class Page:
    """One page to recognise."""

    key: str  # path relative to its input (posix): names its outputs
    path: Path  # the XML file, the line image, or the scan
    kind: str  # "xml", "image" (a line image) or "scan" (a page image without XML: segmented first)
    image: Path | None  # the page image of an XML file (None if it cannot be found)
    frames: int = 1  # scan: page images in the file (a multi-page TIFF, a PDF)
    render: bool = False  # scan: each frame is written as `<stem><frame>.png` beside its XML

    def stems(self) -> list[str]:
        """A scan's output stems, one per frame: `a/b` for `a/b.jpg`, `a/b_p0001`... for several."""
        stem = PurePosixPath(self.key).with_suffix("").as_posix()
        return [stem + frame_name(i, self.frames) for i in range(self.frames)]

    @property
    def outputs(self) -> tuple[str, ...]:
        """Relative paths written for this page, the plain text last (its presence means done):
        the XML copy and the text; a scan's layout with text (PAGE or ALTO) and plain text per
        frame, and the frame as PNG where the XML cannot refer to the file itself."""
        if self.kind == "scan":
            return tuple(f"{stem}{ext}" for stem in self.stems()
                         for ext in ((".png", ".xml", ".txt") if self.render else (".xml", ".txt")))
        txt = PurePosixPath(self.key).with_suffix(".txt").as_posix()
        return (self.key, txt) if self.kind == "xml" else (txt,)

    def to_message(self) -> dict[str, object]:
        """What a fleet worker needs to know of the page (jobs.fleet.worker: `from_message`)."""
        item: dict[str, object] = {"key": self.key, "kind": self.kind,
                                   "files": [rel for _, rel in self.files()]}
        if self.kind == "scan":
            item.update(frames=self.frames, render=self.render)
        return item

    @classmethod
    def from_message(cls, item: dict[str, object], folder: Path) -> Page:
        """The page of a fleet message, its files under `folder`."""
        files = [str(f) for f in item["files"]]  # type: ignore[attr-defined]
        image = next((folder / r for r in files[1:]), None)
        return cls(str(item["key"]), folder / str(item["key"]), str(item["kind"]), image,
                   int(item.get("frames", 1)), bool(item.get("render", False)))  # type: ignore[call-overload]

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


@dataclass(frozen=True)
class PageOutcome:
    """What became of one page after `recognise` ran over its staged folder."""

    key: str
    ok: bool
    lines: int  # lines recognised on it
    reason: str = ""  # why it failed: "<reason>: <detail>" (the first skipped sample's, or the scan's)


def staged_names(pages: Sequence[Page], staged: Path, work: Path | None) -> dict[str, str]:
    """Staged file name -> the user's own file, or, where the staged copy is all there is (a
    fleet worker's download under `work`), the name relative to the input."""
    names = {}
    for page in pages:
        for source, rel in page.files():
            own = rel if source == staged / rel or (work is not None and source.is_relative_to(work)) \
                else str(source)
            names[str(staged / rel)] = own
    return names


def problems_by_file(skipped: Sequence[object], names: dict[str, str]) -> dict[str, str]:
    """The first problem of each file, as "<reason>: <detail>" with the user's own file names."""
    problems: dict[str, str] = {}
    for s in skipped:
        file = str(getattr(s, "file", ""))
        if file not in problems:
            detail = getattr(s, "detail", "")
            text = f"{getattr(s, 'reason', 'skipped')}" + (f": {detail}" if detail else "")
            for staged_name, own in sorted(names.items(), key=lambda kv: -len(kv[0])):  # longest first
                text = text.replace(staged_name, own)
            problems[file] = text
    return problems


def no_lines(page: Page, names: dict[str, str] | None = None) -> str:
    """The dead-letter reason of a page where nothing was left to read."""
    if page.kind == "xml":
        return (f"no-lines: {names.get(str(page.path), page.key) if names else page.key} has no TextLine: "
                "remove the XML to let gpuhire find the lines on its image, or leave the page out")
    return "no-lines: no text line was found on the page"


