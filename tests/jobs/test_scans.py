"""jobs.htr.scans: raw scans read into upright 8-bit frames, bad input refused with a reason."""

from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jobs.htr.scans import MAX_PIXELS, Frame, ScanError, classify, is_blank, read_scan
from jobs.htr.synth import synth


@pytest.fixture(scope="module")
def synth_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic page-shaped scans (JPEG + PAGE XML) and line images; read-only."""
    out = tmp_path_factory.mktemp("scans") / "gt"
    synth(out, 16, 11)  # 8 lines on page(s), 8 line images
    return out


@pytest.fixture(scope="module")
def page_jpg(synth_pages: Path) -> Path:
    return sorted((synth_pages / "pages").glob("*.jpg"))[0]


def _reason(path: Path, **kwargs: int) -> str:
    with pytest.raises(ScanError) as info:
        read_scan(path, **kwargs)
    error = info.value
    assert error.detail and error.detail[0] != " " and ":" in error.detail  # a sentence naming the fix
    return error.reason


def _png_header(width: int, height: int) -> bytes:
    """A PNG with its header and the start of its pixel data only: its size is known, and
    decoding it fails (half a row of pixels, then the file ends)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compress(b"\0" + b"\xff" * width)  # filter byte + one white row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows[: len(rows) // 2])


def _pdf(objects: list[str]) -> bytes:
    """A minimal PDF written by hand (correct xref offsets) from the bodies of its objects."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# ---------------------------------------------------------------- good input


def test_a_jpeg_page_is_one_unnamed_grey_frame(page_jpg: Path) -> None:
    frames = read_scan(page_jpg)
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.index, frame.count, frame.name) == (0, 1, "")
    assert frame.image.mode == "L"
    xml = page_jpg.with_suffix(".xml").read_text()
    assert f'imageWidth="{frame.image.width}"' in xml and f'imageHeight="{frame.image.height}"' in xml


def test_every_frame_of_a_multi_page_tiff(tmp_path: Path) -> None:
    pages = [Image.new("L", (300 + 10 * n, 400), 50 * (n + 1)) for n in range(3)]
    path = tmp_path / "book.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_deflate")
    frames = read_scan(path)
    assert [(f.index, f.count, f.name) for f in frames] == [(0, 3, "_p0001"), (1, 3, "_p0002"), (2, 3, "_p0003")]
    assert [f.image.width for f in frames] == [300, 310, 320]
    assert [int(np.asarray(f.image).mean()) for f in frames] == [50, 100, 150]
    (first,) = read_scan(path, max_frames=1)  # a calibration decodes one page, not the book
    assert (first.index, first.count, first.image.width) == (0, 3, 300)


def test_pdf_pages_are_rendered_at_the_dpi_asked(tmp_path: Path) -> None:
    path = tmp_path / "letter.pdf"
    first, second = Image.new("L", (200, 300), 255), Image.new("L", (200, 300), 90)
    first.save(path, "PDF", save_all=True, append_images=[second], resolution=72)  # 200 x 300 pt pages
    frames = read_scan(path, dpi=144)
    assert [(f.index, f.count, f.name) for f in frames] == [(0, 2, "_p0001"), (1, 2, "_p0002")]
    assert all(f.image.size == (400, 600) and f.image.mode in ("L", "RGB") for f in frames)
    means = [np.asarray(f.image.convert("L")).mean() for f in frames]
    assert means[0] > 250 and abs(means[1] - 90) < 5
    assert [(f.index, f.count) for f in read_scan(path, dpi=144, max_frames=1)] == [(0, 2)]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Stored landscape with a dark block at its top left; orientation 6 (rotate 90 degrees
    clockwise to view) puts the block at the top right of an upright portrait page."""
    stored = Image.new("L", (300, 200), 240)
    ImageDraw.Draw(stored).rectangle((0, 0, 59, 39), fill=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    (frame,) = read_scan(path)
    array = np.asarray(frame.image)
    assert frame.image.size == (200, 300)
    assert array[:60, -40:].mean() < 40  # the block: now at the top right
    assert array[:60, :40].mean() > 200 and array[-60:, -40:].mean() > 200


def test_sixteen_bit_and_transparent_scans_become_8_bit(tmp_path: Path) -> None:
    deep = Image.fromarray(np.full((50, 80), 32768, dtype=np.uint16))
    deep.save(tmp_path / "deep.png")
    (frame,) = read_scan(tmp_path / "deep.png")
    assert frame.image.mode == "L" and abs(int(np.asarray(frame.image).mean()) - 127) <= 1
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    (frame,) = read_scan(tmp_path / "clear.png")
    assert frame.image.mode == "RGB" and np.asarray(frame.image).min() == 255  # transparent -> white paper


# ---------------------------------------------------------------- bad input


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert _reason(tmp_path / "empty.jpg") == "corrupt-image"


def test_truncated_jpeg(page_jpg: Path, tmp_path: Path) -> None:
    data = page_jpg.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert _reason(tmp_path / "cut.jpg") == "corrupt-image"


def test_text_named_jpg(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("these are my notes, not a scan\n")
    assert _reason(tmp_path / "notes.jpg") == "not-an-image"


def test_size_limits_are_checked_before_decoding(tmp_path: Path) -> None:
    """Header-only PNGs: decoding one would fail as corrupt, so 'too-large' proves the order."""
    wide = tmp_path / "wide.png"
    wide.write_bytes(_png_header(30_000, 100))  # 3 MP, but 30,000 px wide
    assert _reason(wide) == "too-large"
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(12_000, 11_000))  # 132 MP > MAX_PIXELS, each side under the limit
    assert MAX_PIXELS < 12_000 * 11_000
    assert _reason(huge) == "too-large"
    small = tmp_path / "small.png"
    small.write_bytes(_png_header(1_000, 1_000))  # within limits: now it is decoded, and has no pixels
    assert _reason(small) == "corrupt-image"


def test_max_pixels_can_be_lowered(page_jpg: Path) -> None:
    assert _reason(page_jpg, max_pixels=1_000_000) == "too-large"


def test_pdf_page_size_is_checked_before_rendering(tmp_path: Path) -> None:
    path = tmp_path / "poster.pdf"
    path.write_bytes(_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                           "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 5000 5000] >>"]))
    assert _reason(path, dpi=300) == "too-large"  # 5000 pt at 300 dpi: 20,833 px a side
    (frame,) = read_scan(path, dpi=10)  # the same page at 10 dpi is fine (and blank)
    assert frame.image.size == (695, 695)  # PDFium rounds 694.4 up


def test_pdf_with_an_empty_page_tree(tmp_path: Path) -> None:
    """Hand-written, well-formed PDF whose page tree has no kids."""
    path = tmp_path / "nothing.pdf"
    path.write_bytes(_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"]))
    assert _reason(path) == "empty-pdf"


def test_truncated_pdf(tmp_path: Path) -> None:
    path = tmp_path / "cut.pdf"
    Image.new("L", (200, 300), 255).save(path, "PDF", resolution=72)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _reason(path) == "corrupt-image"


def test_scan_error_pickles_and_knows_its_reasons() -> None:
    error = ScanError("blank-page", "the page holds no ink: leave it out")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail) == (error.reason, error.detail)
    assert str(copy) == "blank-page; the page holds no ink: leave it out"
    with pytest.raises(ValueError, match="unknown scan error reason"):
        ScanError("mouldy", "dry it")


# ---------------------------------------------------------------- blank pages and line images


def _paper(width: int = 1400, height: int = 1890, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(228, 8, (height, width)), 0, 255).astype(np.uint8)


def test_blank_paper_and_dust_are_blank_ink_is_not(page_jpg: Path) -> None:
    paper = _paper()
    assert is_blank(Image.fromarray(paper))
    dusty = paper.copy()
    for y, x in ((300, 400), (900, 1000), (1500, 200)):
        dusty[y:y + 3, x:x + 3] = 30  # specks of dust
    assert is_blank(Image.fromarray(dusty))
    assert not is_blank(read_scan(page_jpg)[0].image)
    word = Image.fromarray(paper)
    ImageDraw.Draw(word).text((200, 200), "Johann Müller", fill=20, font_size=40)
    assert not is_blank(word)  # one name on a page is not a blank page
    assert is_blank(Image.new("RGB", (800, 1000), (250, 248, 240)))


def test_classify_lines_and_pages(synth_pages: Path, page_jpg: Path) -> None:
    lines = sorted((synth_pages / "lines").glob("*.png"))
    assert lines and all(classify(Image.open(p)) == "line" for p in lines)
    assert classify(read_scan(page_jpg)[0].image) == "page"
    assert classify(Image.new("L", (2400, 380))) == "line"  # a long strip
    assert classify(Image.new("L", (1200, 380))) == "page"
    assert classify(Image.new("L", (600, 800))) == "page"


def test_frame_is_frozen(page_jpg: Path) -> None:
    frame = read_scan(page_jpg)[0]
    assert isinstance(frame, Frame)
    with pytest.raises(AttributeError):
        frame.index = 3  # type: ignore[misc]


def test_line_outlines_are_padded_by_a_tenth_of_the_median_line_height() -> None:
    """kraken's outlines hug the ink; the layout widens them (jobs.htr.segment.LINE_PAD)."""
    from types import SimpleNamespace

    from shapely.geometry import Point, Polygon

    from jobs.htr.segment import layout_from_kraken

    def line(y0: int, h: int) -> SimpleNamespace:
        return SimpleNamespace(baseline=[[100, y0 + h - 5], [600, y0 + h - 5]], regions=["r"],
                               boundary=[[100, y0], [600, y0], [600, y0 + h], [100, y0 + h]])

    region = SimpleNamespace(id="r", boundary=[[50, 50], [700, 50], [700, 500], [50, 500]])
    found = SimpleNamespace(regions={"text": [region]}, lines=[line(100, 30), line(200, 40), line(300, 50)])
    layout = layout_from_kraken(found, 1000, 1400)
    assert [len(ln.polygon) for ln in layout.lines] == [4, 4, 4]
    for original, got in zip(found.lines, layout.lines, strict=True):
        xs, ys = [x for x, _ in got.polygon], [y for _, y in got.polygon]
        (x0, y0), (x1, y1) = original.boundary[0], original.boundary[2]
        assert (min(xs), min(ys), max(xs), max(ys)) == (x0 - 4, y0 - 4, x1 + 4, y1 + 4)  # 0.1 x 40 px
        assert all(Polygon(got.polygon).covers(Point(x, y)) for x, y in original.boundary)
    edge = SimpleNamespace(regions={}, lines=[SimpleNamespace(baseline=[[0, 20], [90, 20]], regions=[],
                                                              boundary=[[0, 0], [90, 0], [90, 25], [0, 25]])])
    xs = [x for x, _ in layout_from_kraken(edge, 100, 100).lines[0].polygon]
    assert min(xs) == 0 and max(xs) == 92  # clamped into the image, never outside
