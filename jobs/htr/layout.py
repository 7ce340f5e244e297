"""The layout of a segmented page (jobs.htr.segment makes it, jobs.htr.layout_xml writes it)."""

from __future__ import annotations

from dataclasses import dataclass

Points = list[tuple[int, int]]


@dataclass(frozen=True)
class SegLine:
    """One text line: `baseline` (>= 2 points), `polygon` (outline, >= 3 points), `region` id."""

    id: str
    baseline: Points
    polygon: Points
    region: str


@dataclass(frozen=True)
class SegRegion:
    """A text region: `type` is the model's class name (kraken's bundled model: "text")."""

    id: str
    type: str
    polygon: Points


@dataclass
class Layout:
    """A page's layout: regions and lines, both in reading order."""

    width: int
    height: int
    regions: list[SegRegion]
    lines: list[SegLine]
