"""Layout analysis of raw page scans: text lines (baselines and outlines) in reading order.

`Segmenter` loads kraken's baseline segmenter (its bundled `blla.mlmodel`, or the user's
`--segment-model`) once and turns a page image into a `Layout`: text regions in reading order,
each line with its baseline, its outline polygon and its region. `write_layout` (in
jobs.htr.layout_xml, re-exported here) writes the layout as PAGE 2019 or ALTO 4 without text;
jobs.htr.writeback fills the recognised text in later.

Lines and regions get short ids of their own ("r1", "l1", ...; kraken's are UUIDs) in reading
order: regions in the order their first line is read, lines grouped by region, so that the
order of `Layout.lines` is the document order of the written XML. A line kraken placed in no
region gets a region of its own kind (type "text", the box around the run of such lines).
Regions that hold no line (kraken's models may find images or separators) are left out.
Coordinates are clamped into the image. The dataclasses live in jobs.htr.layout (re-exported here).

Line outlines are widened by LINE_PAD (a tenth of the page's median line height, about 4 px on a
300 dpi page) all round: kraken's outlines hug the ink and cut the edges of capitals, accents and
descenders, and a recogniser trained on ground-truth lines (which have a margin) reads such
crops badly. Measured on synthetic pages with a model trained on their kind of lines
(bench/bench_pipeline_cer.py): pipeline CER 0.218 with kraken's outlines as they are, 0.105
padded by 4 px, 0.142 by 8 px, 0.206 with the outlines' bounding boxes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from jobs.htr.errors import HtrError
from jobs.htr.kraken_compat import load_kraken
from jobs.htr.layout import Layout, Points, SegLine, SegRegion
from jobs.htr.layout_xml import validate_page, write_layout
from jobs.htr.scans import ScanError, is_blank

MODEL_FIX = ("pass a kraken baseline segmentation model (.mlmodel, e.g. one trained with "
             "`ketos segtrain`) to --segment-model, or leave the option out to use kraken's bundled model")


def _clamp(points: Any, width: int, height: int) -> Points:
    return [(min(max(round(float(x)), 0), width - 1), min(max(round(float(y)), 0), height - 1))
            for x, y in points]


def _box(polygons: list[Points]) -> Points:
    xs = [x for poly in polygons for x, _ in poly]
    ys = [y for poly in polygons for _, y in poly]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


LINE_PAD = 0.1  # outline padding, as a fraction of the page's median line height
LINE_PAD_MIN_PX = 2


def _padded(polygon: Points, pad: float, width: int, height: int) -> Points:
    """`polygon` grown by `pad` pixels all round (mitred corners), clamped into the image."""
    from shapely.geometry import Polygon  # kraken's own dependency

    shape = Polygon(polygon)
    if not shape.is_valid:  # kraken's outlines may touch themselves
        shape = shape.buffer(0)
    grown = shape.buffer(pad, join_style="mitre")
    if grown.is_empty:
        return polygon
    if grown.geom_type != "Polygon":  # parts of a pinched outline: keep them all
        grown = grown.convex_hull
    return _clamp(list(grown.exterior.coords)[:-1], width, height)


def _line_pad(polygons: list[Points]) -> float:
    heights = sorted(max(y for _, y in p) - min(y for _, y in p) for p in polygons)
    return max(float(LINE_PAD_MIN_PX), LINE_PAD * heights[len(heights) // 2]) if heights else 0.0


def layout_from_kraken(segmentation: Any, width: int, height: int) -> Layout:
    """A `Layout` from a `kraken.containers.Segmentation` whose lines are in reading order."""
    kraken_regions: dict[str, tuple[str, Points]] = {}
    for kind, found in (segmentation.regions or {}).items():
        for region in found:
            if region.boundary is not None and len(region.boundary) >= 3:
                kraken_regions[region.id] = (str(kind), _clamp(region.boundary, width, height))
    # Lines in kraken's reading order, each with its kraken region id (or an orphan-run key).
    runs: dict[str, list[tuple[Points, Points]]] = {}
    orphan_run = 0
    previous: str | None = None
    for line in segmentation.lines:
        if line.baseline is None or line.boundary is None or len(line.baseline) < 2 or len(line.boundary) < 3:
            continue  # kraken could not outline it: nothing to crop
        baseline = _clamp(line.baseline, width, height)
        polygon = _clamp(line.boundary, width, height)
        key = next((r for r in (line.regions or []) if r in kraken_regions), None)
        if key is None:
            if previous is None or not previous.startswith("\0orphan"):
                orphan_run += 1
            key = f"\0orphan{orphan_run}"
        runs.setdefault(key, []).append((baseline, polygon))
        previous = key
    pad = _line_pad([p for members in runs.values() for _, p in members])
    regions: list[SegRegion] = []
    lines: list[SegLine] = []
    for key, members in runs.items():
        region_id = f"r{len(regions) + 1}"
        kind, outline = kraken_regions.get(key) or ("text", _box([p for _, p in members]))
        regions.append(SegRegion(id=region_id, type=kind, polygon=outline))
        for baseline, polygon in members:
            lines.append(SegLine(id=f"l{len(lines) + 1}", baseline=baseline,
                                 polygon=_padded(polygon, pad, width, height), region=region_id))
    return Layout(width=width, height=height, regions=regions, lines=lines)


class Segmenter:
    """kraken's baseline segmenter, loaded once; `segment(image)` -> `Layout`."""

    def __init__(self, model: Path | None = None, device: str = "cpu") -> None:
        load_kraken()
        from importlib import resources

        from kraken.lib import vgsl  # type: ignore[import-untyped,unused-ignore]
        from kraken.lib.exceptions import KrakenInvalidModelException  # type: ignore[import-untyped,unused-ignore]

        from jobs.htr.hardware import pick_device, set_cpu_threads

        self.device = str(pick_device(device))
        if self.device == "cpu":
            self.threads = set_cpu_threads()
        else:
            import torch

            self.threads = torch.get_num_threads()
        bundled = Path(str(resources.files("kraken").joinpath("blla.mlmodel")))
        path = Path(model) if model is not None else bundled
        if not path.is_file():
            raise HtrError(f"segmentation model {path} not found", MODEL_FIX)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # kraken 8 moves it; pinned 7.1.1
                net = vgsl.TorchVGSLModel.load_model(str(path))
        except (KrakenInvalidModelException, OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
            raise HtrError(f"{path.name} is not a kraken model ({type(exc).__name__}: {exc})",
                           MODEL_FIX) from None
        if "segmentation" not in (net.model_type or "") or "class_mapping" not in net.user_metadata:
            raise HtrError(f"{path.name} is not a baseline segmentation model (kraken model type: "
                           f"{net.model_type or 'none'})", MODEL_FIX)
        self.net = net
        self.path = path

    @property
    def model_name(self) -> str:
        """The model's file name, for records ("blla.mlmodel" for kraken's bundled one)."""
        return self.path.name

    def segment(self, image: Image.Image) -> Layout:
        """The layout of a page image; ScanError("blank-page") or ("no-lines") when there is none."""
        if is_blank(image):
            raise ScanError("blank-page", "the page holds no ink: leave it out, or check the scan's "
                            "exposure")
        from kraken import blla  # type: ignore[import-untyped,unused-ignore]

        with warnings.catch_warnings():
            # blla.segment is deprecated for kraken 8 (SegmentationTaskModel); pinned to 7.1.1 here.
            warnings.simplefilter("ignore", DeprecationWarning)
            segmentation = blla.segment(image, model=self.net, device=self.device)
        layout = layout_from_kraken(segmentation, image.width, image.height)
        if not layout.lines:
            raise ScanError("no-lines", "no text lines were found on the page: check that it holds "
                            "horizontal text, or pass a segmentation model trained on such pages "
                            "(--segment-model)")
        return layout


__all__ = ["Layout", "SegLine", "SegRegion", "Segmenter", "layout_from_kraken", "validate_page",
           "write_layout"]
