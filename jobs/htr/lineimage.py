"""Page images in, grayscale uint8 line images out.

Conventions for every line image in jobs.htr: 2-D `np.uint8` (height, width), paper light
(255 = white background), ink dark. Pixels outside a line's polygon are set to 255 so the
recogniser never sees the neighbouring lines' ascenders and descenders.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from jobs.htr.formats import Point

BACKGROUND = 255  # white paper: what masked pixels become
# Pillow's decompression-bomb guard stops at ~179 Mpx; scans of newspapers at 600 dpi exceed it.
Image.MAX_IMAGE_PIXELS = 1_000_000_000


def to_gray(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W) uint8, transparent areas on white, 16-bit scaled down."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) or 1.0
        scale = 255.0 / (65535.0 if top > 255 else 255.0)
        return np.clip(array * scale, 0, 255).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def load_gray(path: Path) -> tuple[np.ndarray, float | None]:
    """Decode `path` into (H, W) uint8 and its horizontal dpi (None when the file has none).

    Raises OSError (or ValueError) when the file is missing or cannot be decoded.
    """
    with Image.open(path) as image:
        image.load()
        dpi = image.info.get("dpi")
        x_dpi = float(dpi[0]) if dpi and dpi[0] else None
        return to_gray(image), x_dpi


def pixel_box(polygon: tuple[Point, ...] | None,
              bbox: tuple[float, float, float, float] | None) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1), end exclusive: polygon vertices are pixels, so the last one counts."""
    if polygon:
        xs = [p[0] for p in polygon]
        ys = [p[1] for p in polygon]
        return (math.floor(min(xs)), math.floor(min(ys)), math.floor(max(xs)) + 1, math.floor(max(ys)) + 1)
    if bbox:
        return math.floor(bbox[0]), math.floor(bbox[1]), math.ceil(bbox[2]), math.ceil(bbox[3])
    return None


def crop_line(page: np.ndarray, polygon: tuple[Point, ...] | None,
              bbox: tuple[float, float, float, float] | None) -> np.ndarray | None:
    """Cut one line out of `page`: polygon-masked when there is a polygon, else the box.

    The box is clipped to the page; returns None when nothing of the line lies on the page
    (or the rest is under 2 px in either direction).
    """
    box = pixel_box(polygon, bbox)
    if box is None:
        return None
    height, width = page.shape
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[2], width), min(box[3], height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = page[y0:y1, x0:x1]
    if not polygon:
        return crop.copy()
    mask = Image.new("1", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in polygon], fill=1, outline=1)
    inside = np.asarray(mask, dtype=bool)
    if not inside.any():
        return None
    return np.where(inside, crop, np.uint8(BACKGROUND)).astype(np.uint8)


def fit_height(line: np.ndarray, height: int) -> np.ndarray:
    """Resize to `height` rows keeping the aspect ratio (width at least 1 px)."""
    h, w = line.shape
    if h == height:
        return np.ascontiguousarray(line, dtype=np.uint8)
    new_w = max(1, round(w * height / h))
    image = Image.fromarray(np.ascontiguousarray(line, dtype=np.uint8))
    # Area-averaging when shrinking keeps thin strokes; bicubic when enlarging.
    method = Image.Resampling.BOX if h > height else Image.Resampling.BICUBIC
    return np.asarray(image.resize((new_w, height), method), dtype=np.uint8)
