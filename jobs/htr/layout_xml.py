"""Write a segmented page (`jobs.htr.segment.Layout`) as PAGE 2019 or ALTO 4, without text yet.

PAGE 2019-07-15: Metadata (Creator "gpuhire", Created and LastChange in UTC), Page with the
image's file name and size, ReadingOrder/OrderedGroup referring to the regions in order, then
per region a TextRegion (Coords) holding its TextLines (Coords = outline, Baseline). Valid
against the shipped schema (`validate_page`), and still valid once jobs.htr.writeback has put a
TextEquiv (with conf) into each line.

ALTO 4 (namespace ns-v4#, written as 4.3 like kraken does): Description (MeasurementUnit pixel,
sourceImageInformation/fileName, Processing), Layout/Page/PrintSpace with a TextBlock per
region (Shape/Polygon) and its TextLines (HPOS/VPOS/WIDTH/HEIGHT of the outline's box,
BASELINE as the 4.2+ polyline "x1 y1 x2 y2 ...", Shape/Polygon). ALTO requires a String in
every TextLine: each line holds one empty String until writeback replaces it with the words.

Files are written atomically (a temporary file renamed over `out`).
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]

from jobs.htr.layout import Layout, Points

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PAGE_XSD = Path(__file__).parent / "schemas" / "pagecontent-2019-07-15.xsd"
ALTO_XSD_URL = "http://www.loc.gov/standards/alto/v4/alto-4-3.xsd"
CREATOR = "gpuhire"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # xs:dateTime, UTC


def _page_points(points: Points) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def _alto_points(points: Points) -> str:
    return " ".join(f"{x} {y}" for x, y in points)


def page_tree(layout: Layout, image_name: str) -> etree._ElementTree:
    """The PAGE 2019 document of `layout` (see the module doc)."""
    p = f"{{{PAGE_NS}}}"
    root = etree.Element(f"{p}PcGts", nsmap={None: PAGE_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd")
    meta = etree.SubElement(root, f"{p}Metadata")
    etree.SubElement(meta, f"{p}Creator").text = CREATOR
    now = _now()
    etree.SubElement(meta, f"{p}Created").text = now
    etree.SubElement(meta, f"{p}LastChange").text = now
    page = etree.SubElement(root, f"{p}Page", imageFilename=image_name, imageWidth=str(layout.width),
                            imageHeight=str(layout.height))
    if layout.regions:
        order = etree.SubElement(etree.SubElement(page, f"{p}ReadingOrder"), f"{p}OrderedGroup",
                                 id="ro1", caption="reading order")
        for n, region in enumerate(layout.regions):
            etree.SubElement(order, f"{p}RegionRefIndexed", index=str(n), regionRef=region.id)
    by_region: dict[str, etree._Element] = {}
    for region in layout.regions:
        element = etree.SubElement(page, f"{p}TextRegion", id=region.id,
                                   custom=f"structure {{type:{region.type};}}")
        etree.SubElement(element, f"{p}Coords", points=_page_points(region.polygon))
        by_region[region.id] = element
    for line in layout.lines:
        element = etree.SubElement(by_region[line.region], f"{p}TextLine", id=line.id)
        etree.SubElement(element, f"{p}Coords", points=_page_points(line.polygon))
        etree.SubElement(element, f"{p}Baseline", points=_page_points(line.baseline))
    return etree.ElementTree(root)


def _box(element: etree._Element, points: Points) -> None:
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    element.set("HPOS", str(min(xs)))
    element.set("VPOS", str(min(ys)))
    element.set("WIDTH", str(max(xs) - min(xs)))
    element.set("HEIGHT", str(max(ys) - min(ys)))


def _shape(parent: etree._Element, points: Points) -> None:
    shape = etree.SubElement(parent, f"{{{ALTO_NS}}}Shape")
    etree.SubElement(shape, f"{{{ALTO_NS}}}Polygon", POINTS=_alto_points(points))


def alto_tree(layout: Layout, image_name: str, *, model_name: str = "") -> etree._ElementTree:
    """The ALTO 4 document of `layout` (see the module doc)."""
    a = f"{{{ALTO_NS}}}"
    root = etree.Element(f"{a}alto", nsmap={None: ALTO_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{ALTO_NS} {ALTO_XSD_URL}")
    description = etree.SubElement(root, f"{a}Description")
    etree.SubElement(description, f"{a}MeasurementUnit").text = "pixel"
    source = etree.SubElement(description, f"{a}sourceImageInformation")
    etree.SubElement(source, f"{a}fileName").text = image_name
    processing = etree.SubElement(description, f"{a}Processing", ID="proc1")
    etree.SubElement(processing, f"{a}processingDateTime").text = _now()
    etree.SubElement(processing, f"{a}processingStepDescription").text = "layout analysis"
    if model_name:
        etree.SubElement(processing, f"{a}processingStepSettings").text = f"segmentation model: {model_name}"
    software = etree.SubElement(processing, f"{a}processingSoftware")
    etree.SubElement(software, f"{a}softwareName").text = CREATOR
    page = etree.SubElement(etree.SubElement(root, f"{a}Layout"), f"{a}Page", ID="page1",
                            PHYSICAL_IMG_NR="1", WIDTH=str(layout.width), HEIGHT=str(layout.height))
    space = etree.SubElement(page, f"{a}PrintSpace", HPOS="0", VPOS="0", WIDTH=str(layout.width),
                             HEIGHT=str(layout.height))
    blocks: dict[str, etree._Element] = {}
    for region in layout.regions:
        block = etree.SubElement(space, f"{a}TextBlock", ID=region.id)
        _box(block, region.polygon)
        _shape(block, region.polygon)
        blocks[region.id] = block
    for line in layout.lines:
        element = etree.SubElement(blocks[line.region], f"{a}TextLine", ID=line.id)
        _box(element, line.polygon)
        element.set("BASELINE", _alto_points(line.baseline))
        _shape(element, line.polygon)
        etree.SubElement(element, f"{a}String", CONTENT="")
    return etree.ElementTree(root)


def write_layout(layout: Layout, image_name: str, out: Path, fmt: str = "page", *,
                 model_name: str = "") -> None:
    """Write `layout` to `out` as PAGE ("page") or ALTO ("alto"), atomically."""
    if fmt == "page":
        tree = page_tree(layout, image_name)
    elif fmt == "alto":
        tree = alto_tree(layout, image_name, model_name=model_name)
    else:
        raise ValueError(f"unknown layout format {fmt!r}: use 'page' or 'alto'")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tree.write(str(tmp), xml_declaration=True, encoding="UTF-8", pretty_print=True)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@functools.cache
def _page_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(PAGE_XSD), etree.XMLParser(no_network=True)))


def validate_page(path: Path) -> list[str]:
    """Errors of the PAGE file at `path` against the shipped 2019 schema; empty when valid."""
    try:
        document = etree.parse(str(path), etree.XMLParser(no_network=True, resolve_entities=False))
    except (etree.XMLSyntaxError, OSError) as exc:
        return [f"not well-formed XML: {exc}"]
    schema = _page_schema()
    if schema.validate(document):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
