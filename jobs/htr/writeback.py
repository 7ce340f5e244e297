"""Write recognised text back into PAGE XML and ALTO, keeping the files schema-valid.

PAGE: each TextLine's chosen TextEquiv (lowest @index, else the first) gets the new Unicode
(and PlainText where one exists); a line without TextEquiv gets one, placed where the schema
wants it (after Coords, Baseline and Words; before TextStyle, UserDefined and Labels). A region
that already had a TextEquiv gets its lines joined by newlines. Metadata/LastChange is updated.

ALTO: a TextLine's String/SP/HYP children are replaced by one String per word with SP between,
their boxes spread over the line's box in proportion to the characters.

Lines are named as the readers name them (`LineSample.line_id`: the id/ID attribute, else
"l<index>"). Files are written atomically; `xml_out` may be `xml_in`.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree  # type: ignore[import-untyped]

from jobs.htr.formats import (
    alto_line_id,
    choose_text_equiv,
    iter_alto_lines,
    iter_page_lines,
    page_line_id,
    parse_tree,
    root_namespace,
)

_PAGE_AFTER_EQUIV = ("TextStyle", "UserDefined", "Labels")
# Characters XML 1.0 cannot carry at all (C0 controls but tab/newline/CR, lone surrogates, FFFE/FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` without the characters XML cannot hold (a model's codec may contain them)."""
    return _NOT_XML.sub("", text)


def _write_tree(tree: etree._ElementTree, xml_out: Path) -> None:
    xml_out = Path(xml_out)
    tmp = xml_out.with_name(f".{xml_out.name}.tmp-{os.getpid()}")
    tree.write(str(tmp), xml_declaration=True, encoding="UTF-8")
    os.replace(tmp, xml_out)


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _set_equiv(element: etree._Element, ns: str, text: str, conf: float | None) -> None:
    """Put `text` into `element`'s chosen TextEquiv, creating it in schema order when absent."""
    equiv = choose_text_equiv(element, ns)
    if equiv is None:
        equiv = etree.Element(f"{{{ns}}}TextEquiv")
        if ns.endswith("2019-07-15"):
            equiv.set("index", "0")
        following = next((c for c in element if _local(c) in _PAGE_AFTER_EQUIV), None)
        if following is None:
            element.append(equiv)
        else:
            following.addprevious(equiv)
    text = xml_safe(text)
    plain = equiv.find(f"{{{ns}}}PlainText")
    if plain is not None:
        plain.text = text
    unicode = equiv.find(f"{{{ns}}}Unicode")
    if unicode is None:
        unicode = etree.SubElement(equiv, f"{{{ns}}}Unicode")
    unicode.text = text
    if conf is not None:
        equiv.set("conf", f"{min(max(conf, 0.0), 1.0):.4f}")


def write_page_text(xml_in: Path, texts: dict[str, str], xml_out: Path, *,
                    confidences: dict[str, float] | None = None) -> int:
    """Set the text of the PAGE lines named in `texts`; returns how many lines were written."""
    tree = parse_tree(Path(xml_in))
    root = tree.getroot()
    ns = root_namespace(root)
    written = 0
    touched: dict[etree._Element, None] = {}
    for index, line in enumerate(list(iter_page_lines(root, ns))):
        line_id = page_line_id(line, index)
        if line_id not in texts:
            continue
        _set_equiv(line, ns, texts[line_id], (confidences or {}).get(line_id))
        written += 1
        parent = line.getparent()
        if parent is not None and _local(parent) == "TextRegion":
            touched[parent] = None
    for region in touched:
        if choose_text_equiv(region, ns) is not None:
            lines = region.findall(f"{{{ns}}}TextLine")
            joined = "\n".join(_line_text(ln, ns) for ln in lines)
            _set_equiv(region, ns, joined, None)
    change = root.find(f"{{{ns}}}Metadata/{{{ns}}}LastChange")
    if change is not None and written:
        change.text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # xs:dateTime, UTC
    _write_tree(tree, Path(xml_out))
    return written


def _line_text(line: etree._Element, ns: str) -> str:
    equiv = choose_text_equiv(line, ns)
    if equiv is None:
        return ""
    return equiv.findtext(f"{{{ns}}}Unicode") or ""


def _num(value: float) -> str:
    return str(round(value)) if abs(value - round(value)) < 1e-6 else f"{value:.2f}"


def _alto_words(line: etree._Element, ns: str, line_id: str, text: str, conf: float | None) -> None:
    """Replace the line's String/SP/HYP children by one String per word (SP between)."""
    for child in list(line):
        if _local(child) in ("String", "SP", "HYP"):
            line.remove(child)
    geometry = [line.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")]
    box = [float(v) for v in geometry] if None not in geometry else None
    words = xml_safe(text).split() or [""]
    total = max(len(" ".join(words)), 1)
    x = box[0] if box else 0.0
    for n, word in enumerate(words):
        if n:
            space = etree.SubElement(line, f"{{{ns}}}SP")
            if box:
                step = box[2] / total
                space.set("WIDTH", _num(step))
                space.set("HPOS", _num(x))
                space.set("VPOS", _num(box[1]))
                x += step
        string = etree.SubElement(line, f"{{{ns}}}String", ID=f"{line_id}_w{n + 1}", CONTENT=word)
        if box:
            width = box[2] * max(len(word), 1) / total
            for key, value in (("HPOS", x), ("VPOS", box[1]), ("WIDTH", width), ("HEIGHT", box[3])):
                string.set(key, _num(value))
            x += width
        if conf is not None:
            string.set("WC", f"{min(max(conf, 0.0), 1.0):.4f}")


def write_alto_text(xml_in: Path, texts: dict[str, str], xml_out: Path, *,
                    confidences: dict[str, float] | None = None) -> int:
    """Set the text of the ALTO lines named in `texts`; returns how many lines were written."""
    tree = parse_tree(Path(xml_in))
    root = tree.getroot()
    ns = root_namespace(root)
    written = 0
    for index, line in enumerate(list(iter_alto_lines(root, ns))):
        line_id = alto_line_id(line, index)
        if line_id in texts:
            _alto_words(line, ns, line_id, texts[line_id], (confidences or {}).get(line_id))
            written += 1
    _write_tree(tree, Path(xml_out))
    return written


def write_text(xml_in: Path, fmt: str, texts: dict[str, str], xml_out: Path, *,
               confidences: dict[str, float] | None = None) -> int:
    """Dispatch on `LineSample.format` ("page" or "alto")."""
    if fmt == "page":
        return write_page_text(xml_in, texts, xml_out, confidences=confidences)
    if fmt == "alto":
        return write_alto_text(xml_in, texts, xml_out, confidences=confidences)
    raise ValueError(f"cannot write text into {fmt!r} input")
