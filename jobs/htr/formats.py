"""Parsers for PAGE XML and ALTO: lines, their geometry and their text (no images here).

PAGE XML (2009 to 2019-07-15 namespaces): `Page@imageFilename` -> `TextRegion` (or any region,
tables included) -> `TextLine` with `Coords@points`, `Baseline@points` and `TextEquiv/Unicode`.
Where a line has several `TextEquiv`, the one with the lowest `@index` wins (else the first);
a line without one takes the text of its `Word`s joined with spaces.

ALTO v2 to v4: `Description/sourceImageInformation/fileName`, `TextLine@HPOS/VPOS/WIDTH/HEIGHT`,
`TextLine/Shape/Polygon@POINTS` when present, text from `String@CONTENT`, `SP` and `HYP`.
Coordinates stay in the document's `MeasurementUnit`; `XmlDocument.unit` says which.

XML is parsed with external entities and network access off (ground truth comes from anywhere):
internal entities (`<!ENTITY longs "ſ">`) are expanded, a file that refers to an external
entity fails to parse and is reported as broken.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]

PAGE_NS_PREFIX = "http://schema.primaresearch.org/PAGE/gts/pagecontent/"
# v2 files from older OCR engines use the CCS namespace; v1-v4 use the Library of Congress one.
ALTO_NS_MARKERS = ("www.loc.gov/standards/alto", "schema.ccs-gmbh.com/ALTO")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")

Point = tuple[float, float]


class XmlFormatError(ValueError):
    """A file that is not well-formed XML, or neither PAGE nor ALTO."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "broken-xml" or "unknown-format"
        self.detail = detail


@dataclass(frozen=True)
class LineRecord:
    """One text line as the XML describes it, in document coordinates."""

    line_id: str  # the line's id/ID attribute, or "l<index>" when it has none
    index: int  # 0-based position of the line in document order
    text: str | None  # None when the line carries no text at all
    polygon: tuple[Point, ...] | None  # outline, >= 3 points, or None
    bbox: tuple[float, float, float, float] | None  # x0, y0, x1, y1 (from the polygon or HPOS...)
    baseline: tuple[Point, ...] | None


@dataclass(frozen=True)
class XmlDocument:
    """A parsed PAGE or ALTO file."""

    path: Path
    format: str  # "page" or "alto"
    namespace: str  # the root namespace, e.g. ".../pagecontent/2019-07-15"
    image_ref: str | None  # the image file name as written in the XML
    width: float | None  # page size as the XML states it (document units)
    height: float | None
    unit: str  # "pixel", or ALTO's "mm10" / "inch1200"
    lines: tuple[LineRecord, ...]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities="internal", no_network=True, huge_tree=True, remove_comments=True)


def parse_tree(path: Path) -> etree._ElementTree:
    """Parse `path` safely; raise `XmlFormatError("broken-xml")` when it is not well-formed."""
    try:
        return etree.parse(str(path), _parser())
    except (etree.XMLSyntaxError, OSError) as exc:
        raise XmlFormatError("broken-xml", f"not well-formed XML: {exc}") from exc


def root_namespace(root: etree._Element) -> str:
    """The namespace URI of `root` ('' when none)."""
    return etree.QName(root).namespace or ""


def format_of(namespace: str) -> str | None:
    """'page', 'alto' or None for a root namespace."""
    if namespace.startswith(PAGE_NS_PREFIX):
        return "page"
    if any(marker in namespace for marker in ALTO_NS_MARKERS):
        return "alto"
    return None


def parse_xml(path: Path) -> XmlDocument:
    """Parse a PAGE or ALTO file into an `XmlDocument`; raise `XmlFormatError` otherwise."""
    root = parse_tree(path).getroot()
    namespace = root_namespace(root)
    kind = format_of(namespace)
    if kind == "page":
        return _parse_page(path, root, namespace)
    if kind == "alto":
        return _parse_alto(path, root, namespace)
    raise XmlFormatError("unknown-format", f"root <{etree.QName(root).localname}> in namespace "
                         f"{namespace or '(none)'} is neither PAGE XML nor ALTO")


def parse_points(value: str | None) -> tuple[Point, ...] | None:
    """'x,y x,y ...' (PAGE) or 'x y x y ...' (ALTO) -> points; None when empty or odd."""
    if not value:
        return None
    numbers = [float(n) for n in _NUMBER.findall(value)]
    if not numbers or len(numbers) % 2:
        return None
    return tuple(zip(numbers[0::2], numbers[1::2], strict=True))


def bbox_of(points: tuple[Point, ...]) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box (x0, y0, x1, y1) of `points`."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- PAGE XML


def iter_page_lines(root: etree._Element, namespace: str) -> Iterator[etree._Element]:
    """TextLine elements of a PAGE document in document order."""
    yield from root.iter(f"{{{namespace}}}TextLine")


def page_line_id(element: etree._Element, index: int) -> str:
    """A PAGE line's id, or the stable stand-in used when it has none."""
    return element.get("id") or f"l{index}"


def choose_text_equiv(element: etree._Element, namespace: str) -> etree._Element | None:
    """The direct TextEquiv child with the lowest @index, else the first; None when absent."""
    equivs = element.findall(f"{{{namespace}}}TextEquiv")
    if not equivs:
        return None
    indexed = [(int(e.get("index")), n) for n, e in enumerate(equivs) if (e.get("index") or "").isdigit()]
    if indexed:
        return equivs[min(indexed)[1]]
    return equivs[0]


def _equiv_text(element: etree._Element, namespace: str) -> str | None:
    equiv = choose_text_equiv(element, namespace)
    if equiv is None:
        return None
    unicode = equiv.find(f"{{{namespace}}}Unicode")
    if unicode is None:
        plain = equiv.find(f"{{{namespace}}}PlainText")
        return (plain.text or "") if plain is not None else ""
    return unicode.text or ""


def _page_coords(element: etree._Element, namespace: str, tag: str) -> tuple[Point, ...] | None:
    node = element.find(f"{{{namespace}}}{tag}")
    if node is None:
        return None
    points = parse_points(node.get("points"))
    if points is None:
        # PAGE 2009/2010 wrote points as <Point x= y=/> children.
        children = node.findall(f"{{{namespace}}}Point")
        pts = [(_float(p.get("x")), _float(p.get("y"))) for p in children]
        points = tuple((x, y) for x, y in pts if x is not None and y is not None) or None
    return points


def _page_line(element: etree._Element, namespace: str, index: int) -> LineRecord:
    text = _equiv_text(element, namespace)
    if text is None:
        words = [_equiv_text(w, namespace) for w in element.findall(f"{{{namespace}}}Word")]
        text = " ".join(w for w in words if w) if any(w is not None for w in words) else None
    polygon = _page_coords(element, namespace, "Coords")
    bbox = bbox_of(polygon) if polygon else None
    if polygon is not None and len(polygon) < 3:
        polygon = None  # two points make a box, not an outline
    return LineRecord(line_id=page_line_id(element, index), index=index, text=text, polygon=polygon,
                      bbox=bbox, baseline=_page_coords(element, namespace, "Baseline"))


def _parse_page(path: Path, root: etree._Element, namespace: str) -> XmlDocument:
    page = root.find(f"{{{namespace}}}Page")
    if page is None:
        raise XmlFormatError("unknown-format", "PAGE XML without a <Page> element")
    lines = tuple(_page_line(el, namespace, i) for i, el in enumerate(iter_page_lines(root, namespace)))
    return XmlDocument(path=path, format="page", namespace=namespace, image_ref=page.get("imageFilename"),
                       width=_float(page.get("imageWidth")), height=_float(page.get("imageHeight")),
                       unit="pixel", lines=lines)


# ---------------------------------------------------------------- ALTO


def iter_alto_lines(root: etree._Element, namespace: str) -> Iterator[etree._Element]:
    """TextLine elements of an ALTO document in document order."""
    yield from root.iter(f"{{{namespace}}}TextLine")


def alto_line_id(element: etree._Element, index: int) -> str:
    """An ALTO line's ID, or the stable stand-in used when it has none."""
    return element.get("ID") or f"l{index}"


def alto_line_text(element: etree._Element, namespace: str) -> str | None:
    """String@CONTENT joined by SP (and by a space where two Strings touch), HYP appended."""
    parts: list[str] = []
    seen = False
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = etree.QName(child).localname
        if name == "String":
            seen = True
            if parts and not parts[-1].endswith(" "):
                parts.append(" ")
            parts.append(child.get("CONTENT", ""))
        elif name == "SP" and parts:
            parts.append(" ")
        elif name == "HYP":
            seen = True
            parts.append(child.get("CONTENT", "-"))
    if not seen:
        return None
    return " ".join("".join(parts).split())


Box = tuple[float, float, float, float]


def _alto_geometry(element: etree._Element, namespace: str) -> tuple[tuple[Point, ...] | None, Box | None]:
    shape = element.find(f"{{{namespace}}}Shape/{{{namespace}}}Polygon")
    polygon = parse_points(shape.get("POINTS")) if shape is not None else None
    if polygon is not None and len(polygon) < 3:
        polygon = None
    own = _box_of(element)
    bbox: Box | None
    if own is not None:
        bbox = own
    elif polygon:
        bbox = bbox_of(polygon)
    else:
        bbox = _strings_bbox(element, namespace)
    return polygon, bbox


def _box_of(element: etree._Element) -> Box | None:
    """(x0, y0, x1, y1) from an ALTO element's HPOS/VPOS/WIDTH/HEIGHT, None when one is missing."""
    x, y = _float(element.get("HPOS")), _float(element.get("VPOS"))
    w, h = _float(element.get("WIDTH")), _float(element.get("HEIGHT"))
    if x is None or y is None or w is None or h is None:
        return None
    return x, y, x + w, y + h


def _strings_bbox(element: etree._Element, namespace: str) -> Box | None:
    """Union of the Strings' boxes, for lines that give no geometry of their own."""
    boxes = [b for s in element.findall(f"{{{namespace}}}String") if (b := _box_of(s)) is not None]
    if not boxes:
        return None
    xs0, ys0, xs1, ys1 = zip(*boxes, strict=True)
    return min(xs0), min(ys0), max(xs1), max(ys1)


def _alto_baseline(element: etree._Element) -> tuple[Point, ...] | None:
    value = element.get("BASELINE")
    points = parse_points(value)
    if points is not None and len(points) >= 2:
        return points  # ALTO 4.2+: a polyline "x,y x,y"
    y = _float(value)  # ALTO 2-4.1: a single y coordinate
    hpos, width = _float(element.get("HPOS")), _float(element.get("WIDTH"))
    if y is None or hpos is None or width is None:
        return None
    return ((hpos, y), (hpos + width, y))


def _parse_alto(path: Path, root: etree._Element, namespace: str) -> XmlDocument:
    ns = f"{{{namespace}}}"
    unit = (root.findtext(f"{ns}Description/{ns}MeasurementUnit") or "pixel").strip() or "pixel"
    image_ref = root.findtext(f"{ns}Description/{ns}sourceImageInformation/{ns}fileName")
    page = root.find(f"{ns}Layout/{ns}Page")
    lines = []
    for index, element in enumerate(iter_alto_lines(root, namespace)):
        polygon, bbox = _alto_geometry(element, namespace)
        lines.append(LineRecord(line_id=alto_line_id(element, index), index=index,
                                text=alto_line_text(element, namespace), polygon=polygon, bbox=bbox,
                                baseline=_alto_baseline(element)))
    return XmlDocument(path=path, format="alto", namespace=namespace,
                       image_ref=image_ref.strip() if image_ref else None,
                       width=_float(page.get("WIDTH")) if page is not None else None,
                       height=_float(page.get("HEIGHT")) if page is not None else None,
                       unit=unit, lines=tuple(lines))
