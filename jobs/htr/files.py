"""Finding ground-truth files under the inputs, and the images they refer to.

Folders are walked recursively in sorted order (hidden files and folders skipped), so every
run sees the same files in the same order. `*.xml` are PAGE or ALTO (decided later by their
namespace), `foo.gt.txt` pairs with `foo.png` (or another image suffix); for inference, image
files (and PDFs) are pages of their own: line images, or scans to segment (jobs.htr.pages).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jobs.htr.errors import GroundTruthError
from jobs.htr.formats import XmlDocument

IMAGE_SUFFIXES = (".png", ".bin.png", ".nrm.png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".jp2")
GT_SUFFIX = ".gt.txt"
SCAN_ONLY_SUFFIXES = (".pdf",)  # inference: page scans that can never be line images


@dataclass(frozen=True)
class _Entry:
    path: Path
    rel: str  # path relative to the input it came from (posix), the base of sample keys
    kind: str  # "xml", "pair" or "image"


def _is_image(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _classify(path: Path, inference: bool) -> str | None:
    name = path.name.lower()
    if name.endswith(".xml"):
        return "xml"
    if inference:
        return "image" if _is_image(path) or name.endswith(SCAN_ONLY_SUFFIXES) else None
    if name.endswith(GT_SUFFIX):
        return "pair"
    return None


def discover(inputs: Sequence[Path], *, inference: bool = False) -> list[tuple[Path, str, str]]:
    """(file, key base, kind) for every ground-truth file under `inputs`, in a stable order.

    Raises GroundTruthError for an input path that does not exist (a typo, not a bad sample).
    """
    entries: list[_Entry] = []
    for raw in inputs:
        root = Path(raw)
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = path.relative_to(root)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                kind = _classify(path, inference)
                if kind:
                    entries.append(_Entry(path, rel.as_posix(), kind))
        elif root.is_file():
            kind = _classify(root, inference) or ("pair" if _is_image(root) and not inference else None)
            if kind == "pair" and not root.name.lower().endswith(GT_SUFFIX):
                root = _pair_text_of(root)
            if kind:
                entries.append(_Entry(root, root.name, kind))
        else:
            raise GroundTruthError(f"input {root} does not exist", "check the path (files or directories)")
    seen: Counter[str] = Counter()
    out = []
    for e in entries:
        seen[e.rel] += 1
        key = e.rel if seen[e.rel] == 1 else f"{e.rel}~{seen[e.rel]}"  # same name from two inputs
        out.append((e.path, key, e.kind))
    return out


def _pair_text_of(image: Path) -> Path:
    name = image.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return image.with_name(name[: -len(suffix)] + GT_SUFFIX)
    return image.with_name(image.stem + GT_SUFFIX)


def pair_image_of(text_file: Path) -> Path | None:
    """The image of a `foo.gt.txt` pair: `foo.png`, `foo.bin.png`, `foo.jpg`, ... (first found)."""
    stem = text_file.name[: -len(GT_SUFFIX)]
    for suffix in IMAGE_SUFFIXES:
        for candidate in (text_file.with_name(stem + suffix), text_file.with_name(stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def resolve_page_image(doc: XmlDocument) -> Path | None:
    """Find the image an XML file refers to: as written, by base name, next to or above the XML."""
    here = doc.path.parent
    candidates: list[Path] = []
    if doc.image_ref:
        ref = doc.image_ref.removeprefix("file://")
        ref_path = Path(ref)
        candidates += [ref_path] if ref_path.is_absolute() else [here / ref_path]
        base = ref.replace("\\", "/").rsplit("/", 1)[-1]
        candidates += [here / base, here.parent / base]
    stem = doc.path.name[:-4]
    candidates += [folder / (stem + s) for folder in (here, here.parent) for s in IMAGE_SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)


