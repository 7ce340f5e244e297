"""Synthetic ground truth for the demo, tests and benchmarks: `python -m jobs.htr synth OUT`.

Lines of words from a small built-in vocabulary (with diacritics, digits and punctuation) are
rendered with the system's TrueType fonts, sheared, rotated a little, blurred, inked in varying
greys and laid out on noisy paper. Written as

    OUT/pages/page_0001.jpg + page_0001.xml     PAGE XML 2019-07-15: polygons, baselines, TextEquiv
    OUT/lines/line_000001.png + .gt.txt         image + text pairs

N lines in all: with both forms, the first ceil(N/2) lines go on pages and the rest become pairs,
so that compiling OUT yields exactly N distinct lines. The same seed on the same machine (same
fonts) gives byte-identical files. Without any TrueType font (bare CI images) Pillow's built-in
scalable font is used and the text folded to ASCII; install `fonts-dejavu-core` for better lines.
"""

from __future__ import annotations

import math
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lxml import etree  # type: ignore[import-untyped]
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PAGE_ASPECT = 1.35  # height / width of a synthetic page (A4 is 1.41)
PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
FIXED_DATE = "2026-01-01T00:00:00"  # a constant so that files are reproducible
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts",
             "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts")
FONT_FAMILIES = ("DejaVuSans", "DejaVuSerif", "Liberation", "NotoSans-", "NotoSerif-", "FreeSans",
                 "FreeSerif", "Ubuntu", "Arial", "Times", "Georgia", "Verdana")
FONT_EXCLUDE = ("Mono", "Math", "ExtraLight", "Symbol", "Emoji", "CJK", "Light")
MAX_FONTS = 12

WORDS = (  # noqa: SIM905 - a paragraph of words reads better than a 120-item list
    "der die das und nicht mit für über Straße Bürger Müller Fräulein schön größer Häuser "
    "le la les et pour avec élève été français café naïve façade garçon où très "
    "the and of to in that with from letter year river church house market court "
    "señor niño año mañana corazón ciudad "
    "Dvořák Łódź Åse Øresund Kraków Žižka čas "
    "anno domini mense Januarii Martii ecclesia parochia baptizatus natus obiit "
    "John Mary William Anna Peter Johann Maria Marie Jean Pierre Luise Heinrich "
    "Sohn Tochter Vater Mutter Witwe Zeuge Pfarrer Schreiber Amt Hof Dorf Stadt"
).split()
ASCII_FOLD = str.maketrans({"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE",
                            "œ": "oe"})


@dataclass
class SynthReport:
    """What `synth` wrote."""

    out: Path
    lines: int
    page_lines: int
    pair_lines: int
    pages: int
    fonts: list[str] = field(default_factory=list)  # font file names ("built-in" for Pillow's)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for people."""
        return (f"wrote {self.lines} synthetic lines to {self.out} ({self.page_lines} on {self.pages} PAGE "
                f"pages, {self.pair_lines} as image + .gt.txt pairs) with {len(self.fonts)} fonts "
                f"in {self.seconds:.1f} s")


def find_fonts() -> list[Path]:
    """Latin text fonts installed on this machine (sorted; at most MAX_FONTS, evenly picked)."""
    found: set[Path] = set()
    for folder in FONT_DIRS:
        root = Path(folder).expanduser()
        if root.is_dir():
            for path in root.rglob("*"):
                name = path.name
                if (name.lower().endswith((".ttf", ".otf")) and any(f in name for f in FONT_FAMILIES)
                        and not any(x in name for x in FONT_EXCLUDE)):
                    found.add(path)
    fonts = sorted(found, key=lambda p: (p.name, str(p)))
    if len(fonts) > MAX_FONTS:
        step = len(fonts) / MAX_FONTS
        fonts = [fonts[int(i * step)] for i in range(MAX_FONTS)]
    return fonts


class _Fonts:
    """Fonts by (file, size), each with the set of vocabulary characters it lacks."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths: list[Path | None] = list(paths) or [None]
        self._cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
        self.missing: list[set[str]] = []
        alphabet = sorted(set("".join(WORDS)) | set("0123456789.,;:!?()'-"))
        for i in range(len(self.paths)):
            font = self.get(i, 32)
            tofu = _glyph(font, "\ue000")  # private-use: every font draws its "missing" box there
            self.missing.append({c for c in alphabet if _glyph(font, c) == tofu})

    def get(self, i: int, size: int) -> ImageFont.FreeTypeFont:
        key = (i, size)
        if key not in self._cache:
            path = self.paths[i]
            font = ImageFont.load_default(size=size) if path is None else ImageFont.truetype(str(path), size)
            self._cache[key] = font  # type: ignore[assignment]
        return self._cache[key]

    def names(self) -> list[str]:
        return [p.name if p else "built-in" for p in self.paths]


def _glyph(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    image = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(image).text((8, 8), char, font=font, fill=255)
    return image.tobytes()


def _fold(text: str, missing: set[str]) -> str:
    """Replace characters a font lacks by ASCII look-alikes (é -> e), dropping the rest."""
    if not missing or not set(text) & missing:
        return text
    text = text.translate(ASCII_FOLD)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return "".join(c for c in text if c not in missing)


def make_text(rng: np.random.Generator) -> str:
    """2-6 words, sometimes a number, some punctuation; the first word capitalised."""
    words = [str(WORDS[rng.integers(len(WORDS))]) for _ in range(int(rng.integers(2, 7)))]
    if rng.random() < 0.4:
        number = (str(int(rng.integers(1700, 2000))) if rng.random() < 0.5
                  else f"{int(rng.integers(1, 100))},{int(rng.integers(0, 100)):02d}")
        words.insert(int(rng.integers(len(words) + 1)), number)
    for i in range(len(words) - 1):
        if rng.random() < 0.15:
            words[i] += str(rng.choice([",", ";", ":"]))
    words[0] = words[0][:1].upper() + words[0][1:]
    if rng.random() < 0.6:
        words[-1] += str(rng.choice([".", ".", "!", "?"]))
    if rng.random() < 0.1:
        words[1] = f"({words[1]})"
    return " ".join(words)


@dataclass
class _Line:
    text: str
    image: np.ndarray  # (h, w) uint8, 255 background
    polygon: list[tuple[float, float]]  # outline in the line image's coordinates
    baseline: list[tuple[float, float]]


def _rotate_points(points: list[tuple[float, float]], size: tuple[int, int], new_size: tuple[int, int],
                   degrees: float) -> list[tuple[float, float]]:
    """Where points land after Image.rotate(degrees, expand=True) (counter-clockwise)."""
    theta = math.radians(degrees)
    cx, cy = size[0] / 2, size[1] / 2
    nx, ny = new_size[0] / 2, new_size[1] / 2
    c, s = math.cos(theta), math.sin(theta)
    return [(nx + (x - cx) * c + (y - cy) * s, ny - (x - cx) * s + (y - cy) * c) for x, y in points]


def render_line(text: str, fonts: _Fonts, rng: np.random.Generator) -> _Line:
    """Render `text` with a random font, size, ink, shear, rotation and blur."""
    index = int(rng.integers(len(fonts.paths)))
    text = _fold(text, fonts.missing[index]) or "a"
    font = fonts.get(index, int(rng.integers(26, 40)))
    ascent, descent = font.getmetrics()
    left, _, right, _ = font.getbbox(text)
    pad = 6
    shear = float(rng.uniform(-0.25, 0.25))
    height = ascent + descent + 2 * pad
    slack = math.ceil(abs(shear) * height)
    width = math.ceil(right - left) + 2 * pad + slack
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).text((pad - left + (slack if shear > 0 else 0), pad), text, font=font,
                               fill=int(rng.integers(0, 90)))
    base_y = pad + ascent
    if slack:  # x_in = x_out + shear * (y_out - base_y): the baseline stays put, the ink leans
        image = image.transform(image.size, Image.Transform.AFFINE, (1, shear, -shear * base_y, 0, 1, 0),
                                resample=Image.Resampling.BILINEAR, fillcolor=255)
    polygon = [(0.0, 0.0), (width - 1.0, 0.0), (width - 1.0, height - 1.0), (0.0, height - 1.0)]
    baseline = [(pad / 2, float(base_y)), (width - 1 - pad / 2, float(base_y))]
    degrees = float(rng.uniform(-1.5, 1.5))
    rotated = image.rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=255)
    polygon = _rotate_points(polygon, image.size, rotated.size, degrees)
    baseline = _rotate_points(baseline, image.size, rotated.size, degrees)
    blur = float(rng.uniform(0.0, 0.9))
    if blur > 0.3:
        rotated = rotated.filter(ImageFilter.GaussianBlur(blur))
    return _Line(text, np.asarray(rotated, dtype=np.uint8), polygon, baseline)


def _paper(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tint the paper and add sensor noise."""
    tone = float(rng.uniform(225, 250))
    sigma = float(rng.uniform(2, 10))
    out = array.astype(np.float32) * np.float32(tone / 255.0)
    out += rng.standard_normal(array.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(out, 0, 255, out=out).astype(np.uint8)


def _points(points: list[tuple[float, float]], dx: float, dy: float) -> str:
    return " ".join(f"{round(x + dx)},{round(y + dy)}" for x, y in points)


def _page_xml(image_name: str, size: tuple[int, int], placed: list[tuple[_Line, int, int]],
              page_no: int) -> bytes:
    """A PAGE 2019 document with one text region holding `placed` lines (line, x, y)."""
    nsmap = {None: PAGE_NS, "xsi": XSI_NS}
    root = etree.Element(f"{{{PAGE_NS}}}PcGts", nsmap=nsmap)
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{PAGE_NS} {PAGE_NS}/pagecontent.xsd")
    meta = etree.SubElement(root, f"{{{PAGE_NS}}}Metadata")
    etree.SubElement(meta, f"{{{PAGE_NS}}}Creator").text = "gpuhire synth"
    etree.SubElement(meta, f"{{{PAGE_NS}}}Created").text = FIXED_DATE
    etree.SubElement(meta, f"{{{PAGE_NS}}}LastChange").text = FIXED_DATE
    page = etree.SubElement(root, f"{{{PAGE_NS}}}Page", imageFilename=image_name,
                            imageWidth=str(size[0]), imageHeight=str(size[1]))
    region = etree.SubElement(page, f"{{{PAGE_NS}}}TextRegion", id=f"p{page_no}_r1", type="paragraph")
    xs = [x for _, x, _ in placed] + [x + ln.image.shape[1] for ln, x, _ in placed]
    ys = [y for _, _, y in placed] + [y + ln.image.shape[0] for ln, _, y in placed]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs) - 1, max(ys) - 1
    etree.SubElement(region, f"{{{PAGE_NS}}}Coords", points=f"{x0},{y0} {x1},{y0} {x1},{y1} {x0},{y1}")
    for n, (line, x, y) in enumerate(placed, start=1):
        el = etree.SubElement(region, f"{{{PAGE_NS}}}TextLine", id=f"p{page_no}_l{n}")
        etree.SubElement(el, f"{{{PAGE_NS}}}Coords", points=_points(line.polygon, x, y))
        etree.SubElement(el, f"{{{PAGE_NS}}}Baseline", points=_points(line.baseline, x, y))
        equiv = etree.SubElement(el, f"{{{PAGE_NS}}}TextEquiv", index="0")
        etree.SubElement(equiv, f"{{{PAGE_NS}}}Unicode").text = line.text
    equiv = etree.SubElement(region, f"{{{PAGE_NS}}}TextEquiv")
    etree.SubElement(equiv, f"{{{PAGE_NS}}}Unicode").text = "\n".join(ln.text for ln, _, _ in placed)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _write_pages(folder: Path, count: int, fonts: _Fonts, rng: np.random.Generator) -> int:
    """Render `count` lines onto pages of 8-16 lines; returns the number of pages.

    A page has a page's proportions (height at least PAGE_ASPECT x width, blank below the text
    block), as a scan has: layout analysis scales a page to a fixed height, and a short strip of
    text lines would be read as a few huge lines.
    """
    folder.mkdir(parents=True, exist_ok=True)
    done = pages = 0
    while done < count:
        pages += 1
        n = min(count - done, int(rng.integers(8, 17)))
        lines = [render_line(make_text(rng), fonts, rng) for _ in range(n)]
        margin = 60
        width = max(1400, max(ln.image.shape[1] for ln in lines) + 2 * margin + 40)
        placed, y = [], margin
        for line in lines:
            placed.append((line, margin + int(rng.integers(0, 40)), y))
            y += line.image.shape[0] + int(rng.integers(4, 20))
        height = max(y + margin, round(width * PAGE_ASPECT))
        canvas = np.full((height, width), 255, dtype=np.uint8)
        for line, x, top in placed:  # darken-blend: overlapping paddings never erase ink
            h, w = line.image.shape
            np.minimum(canvas[top:top + h, x:x + w], line.image, out=canvas[top:top + h, x:x + w])
        name = f"page_{pages:04d}"
        # JPEG like most scans, and because noisy paper makes PNG encoding the slowest step.
        Image.fromarray(_paper(canvas, rng)).save(folder / f"{name}.jpg", quality=90)
        (folder / f"{name}.xml").write_bytes(_page_xml(f"{name}.jpg", (width, height), placed, pages))
        done += n
    return pages


def _write_pairs(folder: Path, count: int, start: int, fonts: _Fonts, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        line = render_line(make_text(rng), fonts, rng)
        Image.fromarray(_paper(line.image, rng)).save(folder / f"line_{n:06d}.png", compress_level=1)
        (folder / f"line_{n:06d}.gt.txt").write_text(line.text + "\n", encoding="utf-8")


def synth(out: Path, lines: int, seed: int, *, pages: bool = True, pairs: bool = True) -> SynthReport:
    """Write `lines` synthetic ground-truth lines under `out` (see the module doc); deterministic per seed."""
    if lines < 1:
        raise ValueError("lines must be at least 1")
    if not (pages or pairs):
        raise ValueError("choose pages, pairs or both")
    started = time.monotonic()
    out = Path(out)
    fonts = _Fonts(find_fonts())
    rng = np.random.default_rng(seed)
    page_lines = (lines + 1) // 2 if pages and pairs else (lines if pages else 0)
    pair_lines = lines - page_lines
    n_pages = _write_pages(out / "pages", page_lines, fonts, rng) if page_lines else 0
    if pair_lines:
        _write_pairs(out / "lines", pair_lines, page_lines + 1, fonts, rng)
    return SynthReport(out=out, lines=lines, page_lines=page_lines, pair_lines=pair_lines, pages=n_pages,
                       fonts=fonts.names(), seconds=time.monotonic() - started)


def synth_main(out: Path, lines: int, seed: int, *, pages: bool = True, pairs: bool = True) -> int:
    """CLI body of `python -m jobs.htr synth`: write, print the summary, return the exit status."""
    report = synth(out, lines, seed, pages=pages, pairs=pairs)
    print(report.summary())
    return 0
