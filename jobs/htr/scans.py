"""Raw scans: read page images and PDFs into frames, and tell blank pages and line images apart.

`read_scan` accepts JPEG, PNG, TIFF (every frame of a multi-page TIFF) and any other format
Pillow reads, and PDF (each page rendered at `dpi` by pypdfium2, part of the kraken extra).
EXIF orientation is applied, so a phone photo taken sideways comes out upright. Frames are 8-bit
grey ("L") or "RGB": 16-bit and float scans are scaled to 8 bits, transparency is flattened
onto white.

Size limits are checked from the header (for PDF: the page size times `dpi`) before any pixel
is decoded, so a hostile or mistaken 100,000-px-wide file costs nothing:

    MAX_PIXELS   120,000,000 pixels per frame: an A3 page at 600 dpi is ~70 MP, a large
                 newspaper page at 400 dpi ~100 MP. Callers may pass `max_pixels`.
    MAX_SIDE_PX  20,000 px on either side (layout analysis of a longer page is meaningless).

Every failure is a `ScanError` with a `reason` (a fixed word for records and summaries) and a
`detail` (one sentence naming the fix).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jobs.htr.errors import HtrError

MAX_PIXELS = 120_000_000
MAX_SIDE_PX = 20_000
REASONS = ("not-an-image", "corrupt-image", "too-large", "empty-pdf", "blank-page", "no-lines")

# classify(): a line image is at most LINE_MAX_HEIGHT_PX high, or a wide strip (width/height at
# least LINE_MIN_ASPECT) at most LINE_STRIP_MAX_HEIGHT_PX high; anything else is a page.
LINE_MAX_HEIGHT_PX = 200
LINE_MIN_ASPECT = 4.0
LINE_STRIP_MAX_HEIGHT_PX = 400

# is_blank(): the page is min-pooled to about BLANK_SIDE_PX on its longer side (thin strokes
# survive, paper noise does not add up), and a pixel is ink when it is at least BLANK_INK_DELTA
# grey levels darker than the paper (the median). Fewer than BLANK_INK_FRACTION ink pixels: blank.
BLANK_SIDE_PX = 1000
BLANK_INK_DELTA = 64
BLANK_INK_FRACTION = 0.0002


class ScanError(HtrError):
    """A scan that cannot be used: `reason` (one of REASONS) and `detail` (naming the fix)."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown scan error reason {reason!r}")
        super().__init__(reason, detail)

    @property
    def reason(self) -> str:
        return self.message

    @property
    def detail(self) -> str:
        return self.fix or ""


@dataclass(frozen=True)
class Frame:
    """One page of a scan: `name` is "" for single-frame sources, else "_p0001" (1-based)."""

    image: Image.Image
    index: int
    count: int
    name: str


def frame_name(index: int, count: int) -> str:
    """The output-stem suffix of frame `index` (0-based) of `count`."""
    return "" if count == 1 else f"_p{index + 1:04d}"


def _check_size(width: int, height: int, max_pixels: int, what: str) -> None:
    if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
        raise ScanError("too-large", f"{what} is {width}x{height} px, more than {MAX_SIDE_PX:,} px on a "
                        "side: scale it down (or split it) before recognition")
    if width * height > max_pixels:
        raise ScanError("too-large", f"{what} is {width}x{height} px ({width * height / 1e6:.0f} MP), more "
                        f"than {max_pixels / 1e6:.0f} MP: scale it down before recognition")


def _to_8bit(image: Image.Image) -> Image.Image:
    """`image` as "L" or "RGB" (16-bit and float scaled, alpha flattened onto white)."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        return Image.fromarray(np.clip(array * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if "A" in image.mode or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("1",):
        return image.convert("L")
    if image.mode == "P":
        palette = image.getpalette() or []
        rgb = image.convert("RGB")
        grey = all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
        return rgb.convert("L") if grey else rgb
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


# PDFium's load error codes (FPDF_ERR_SUCCESS, FPDF_ERR_PASSWORD).
_PDFIUM_SUCCESS = 0
_PDFIUM_PASSWORD = 4
_PDF_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z])")
_EMPTY_PDF = "{name} is a PDF without pages: export it again with its pages"


def _read_pdf(path: Path, dpi: int, max_pixels: int, max_frames: int | None = None) -> list[Frame]:
    try:
        import pypdfium2 as pdfium  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ScanError("not-an-image", f"{path.name} is a PDF, and reading PDFs needs pypdfium2: "
                        "install the kraken extra: pip install 'gpuhire[kraken]'") from None
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == _PDFIUM_PASSWORD:
            raise ScanError("corrupt-image", f"{path.name} is a password-protected PDF: save an "
                            "unprotected copy") from None
        if code == _PDFIUM_SUCCESS and not _PDF_PAGE_OBJECT.search(path.read_bytes()):
            # PDFium parsed the file without error but refuses a document whose page tree is empty.
            raise ScanError("empty-pdf", _EMPTY_PDF.format(name=path.name)) from None
        raise ScanError("corrupt-image", f"{path.name} is a damaged PDF ({exc}): export it again") from None
    try:
        count = len(pdf)
        if count == 0:
            raise ScanError("empty-pdf", _EMPTY_PDF.format(name=path.name))
        scale = dpi / 72.0  # PDF user space is 1/72 inch
        for n in range(count):  # every page's size before rendering any
            width_pt, height_pt = pdf.get_page_size(n)
            _check_size(math.ceil(width_pt * scale), math.ceil(height_pt * scale), max_pixels,
                        f"page {n + 1} of {path.name} at {dpi} dpi")
        frames = []
        for n in range(count if max_frames is None else min(count, max_frames)):
            page = pdf[n]
            try:
                image = page.render(scale=scale).to_pil()
            finally:
                page.close()
            frames.append(Frame(_to_8bit(image), n, count, frame_name(n, count)))
        return frames
    except pdfium.PdfiumError as exc:
        raise ScanError("corrupt-image", f"{path.name} is a damaged PDF ({exc}): export it again") from None
    finally:
        pdf.close()


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit (89 MP); MAX_PIXELS is checked against the header next.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        limit_mp = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ScanError("too-large", f"{path.name} has more than {limit_mp:.0f} MP: scale it down before "
                        "recognition") from None
    except UnidentifiedImageError:
        raise ScanError("not-an-image", f"{path.name} is not an image Pillow can read: convert it to "
                        "JPEG, PNG, TIFF or PDF") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ScanError("corrupt-image", f"{path.name} cannot be opened ({exc}): copy or export it "
                        "again") from None


def read_scan(path: Path, *, dpi: int = 300, max_pixels: int = MAX_PIXELS,
              max_frames: int | None = None) -> list[Frame]:
    """Every page of the scan at `path`, upright, as 8-bit frames (see the module doc); with
    `max_frames`, only the first ones are decoded (each Frame's `count` is still the file's)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise ScanError("not-an-image", f"{path} cannot be read ({exc.strerror}): check the path") from None
    if not head:
        raise ScanError("corrupt-image", f"{path.name} is empty (0 bytes): copy it again")
    if b"%PDF-" in head:
        return _read_pdf(path, dpi, max_pixels, max_frames)
    frames: list[Frame] = []
    with _open(path) as image:
        count = getattr(image, "n_frames", 1)
        for n in range(count if max_frames is None else min(count, max_frames)):
            try:
                image.seek(n)
            except (OSError, EOFError, ValueError) as exc:
                raise ScanError("corrupt-image", f"frame {n + 1} of {path.name} cannot be read ({exc}): "
                                "copy or export it again") from None
            _check_size(image.width, image.height, max_pixels,
                        path.name if count == 1 else f"frame {n + 1} of {path.name}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    image.load()
                    upright = ImageOps.exif_transpose(image)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise ScanError("corrupt-image", f"{path.name} is damaged ({exc}): copy or export it "
                                "again") from None
            frames.append(Frame(_to_8bit(upright.copy() if upright is image else upright), n, count,
                                frame_name(n, count)))
    return frames


def _grey_array(image: Image.Image) -> np.ndarray:
    grey = image if image.mode == "L" else _to_8bit(image).convert("L")
    return np.asarray(grey)


def is_blank(image: Image.Image) -> bool:
    """True when the page holds (almost) no ink: see BLANK_* above. About 10 ms for a 3 MP page."""
    array = _grey_array(image)
    block = max(1, -(-max(array.shape) // BLANK_SIDE_PX))
    h, w = (array.shape[0] // block) * block, (array.shape[1] // block) * block
    if h == 0 or w == 0:
        return True
    pooled = array[:h, :w].reshape(h // block, block, w // block, block).min(axis=(1, 3))
    paper = float(np.median(pooled))
    ink = np.count_nonzero(pooled < paper - BLANK_INK_DELTA)
    return bool(ink < BLANK_INK_FRACTION * pooled.size)


def classify(image: Image.Image) -> str:
    """"line" for a text-line image, "page" for a page (see LINE_* above)."""
    width, height = image.size
    if height <= LINE_MAX_HEIGHT_PX:
        return "line"
    if width >= LINE_MIN_ASPECT * height and height <= LINE_STRIP_MAX_HEIGHT_PX:
        return "line"
    return "page"
