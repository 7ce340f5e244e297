"""Page scans for the infer tests: synthetic pages with their ground truth kept aside, matching
found lines to true ones by position, and the character error rate (shared by test_scans_*)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lxml import etree

PAGE_NS = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"
ALTO_NS = "{http://www.loc.gov/standards/alto/ns-v4#}"


def synth_set(root: Path, lines: int, seed: int, *, pairs: bool = True) -> Path:
    """`python -m jobs.htr synth` output: pages/page_000N.jpg + .xml, lines/line_*.png + .gt.txt."""
    from jobs.htr.synth import synth

    synth(root, lines, seed, pairs=pairs)
    return root


def raw_scan(page_xml: Path, folder: Path, truth: Path) -> Path:
    """Copy a synthetic page's image into `folder` without its XML (kept in `truth`)."""
    folder.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    image = page_xml.with_suffix(".jpg")
    shutil.copy(page_xml, truth / page_xml.name)
    return Path(shutil.copy(image, folder / image.name))


def page_lines(xml: Path) -> list[tuple[float, float, str]]:
    """(baseline centre x, centre y, text) of each TextLine of a PAGE file, in document order."""
    out = []
    for line in etree.parse(str(xml)).iter(f"{PAGE_NS}TextLine"):
        base = line.find(f"{PAGE_NS}Baseline")
        points = [tuple(map(float, p.split(","))) for p in base.get("points").split()]
        text = line.findtext(f"{PAGE_NS}TextEquiv/{PAGE_NS}Unicode") or ""
        out.append((sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points), text))
    return out


def match_by_position(truth: list[tuple[float, float, str]], found: list[tuple[float, float, str]],
                      max_dy: float = 25.0) -> list[tuple[str, str | None]]:
    """Each true line with the found line whose baseline centre is nearest in y (within max_dy)."""
    pairs: list[tuple[str, str | None]] = []
    for _, y, text in truth:
        best = min(found, key=lambda f: abs(f[1] - y), default=None)
        pairs.append((text, best[2] if best is not None and abs(best[1] - y) <= max_dy else None))
    return pairs


def distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def cer(pairs: list[tuple[str, str | None]]) -> float:
    """Character error rate over (truth, read) pairs; a true line with no match counts as deleted."""
    chars = sum(len(t) for t, _ in pairs)
    return sum(distance(t, r or "") for t, r in pairs) / max(1, chars)
