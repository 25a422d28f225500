"""A corpus of bad and odd image files, written into a folder at test time.

Each case says what a correct tool must do with it: ``ok`` (a valid analysis),
``error`` (the project's clear error), or ``either`` (a damaged file that some
decoders can still partly read; either answer is fine, a crash or hang is not).
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OK, ERROR, EITHER = "ok", "error", "either"


@dataclass(frozen=True)
class Case:
    name: str  # file name, extension included (sometimes a lying one)
    kind: str  # class of input, for the report: mode, format, size, bomb, ...
    expect: str  # OK, ERROR or EITHER
    data: bytes

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        path.write_bytes(self.data)
        return path


# --- helpers ------------------------------------------------------------------

def pattern(w: int, h: int) -> np.ndarray:
    """An asymmetric RGB test picture (gradients + a corner block), so rotations are distinguishable."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + 2 * y) % 256], axis=-1)
    rgb[: max(h // 4, 1), : max(w // 3, 1)] = (255, 0, 0)
    return rgb.astype(np.uint8)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a token IDAT: tiny file, huge claim."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def png_real_bomb(side: int) -> bytes:
    """A genuine 1-bit side x side PNG of zeros: every row is valid, zlib squeezes it to ~0.1% of its size."""
    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(comp.compress(row * (side % 1000)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF marker is patched to claim another size."""
    data = bytearray(encode(Image.fromarray(pattern(16, 16)), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.fromarray(pattern(8, 8)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def exif_jpeg(orientation: int, w: int = 48, h: int = 32, fmt: str = "JPEG") -> bytes:
    image = Image.fromarray(pattern(w, h))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


def animated(fmt: str, frames: int = 4, size: int = 40) -> bytes:
    ims = [Image.fromarray(np.roll(pattern(size, size), 7 * i, axis=1)) for i in range(frames)]
    if fmt == "GIF":
        ims = [im.convert("P") for im in ims]
    return encode(ims[0], fmt, save_all=True, append_images=ims[1:], duration=50, loop=0)


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("picture.png", encode(Image.new("RGB", (4, 4)), "PNG"))
    return buf.getvalue()


# --- the corpus ---------------------------------------------------------------

def mode_cases() -> list[Case]:
    rgb = Image.fromarray(pattern(40, 30))
    grey = np.asarray(rgb.convert("L"))
    f32 = grey.astype(np.float32) / 7.0 - 3.0
    f32_bad = f32.copy()
    f32_bad[0, :5], f32_bad[1, :5] = np.nan, np.inf
    p_trns = rgb.convert("P")
    p_trns.info["transparency"] = 0
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray((np.arange(40)[None, :].repeat(30, 0) * 6).astype(np.uint8)))
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    return [
        Case("mode_1.png", "mode", OK, encode(rgb.convert("1"), "PNG")),
        Case("mode_L.png", "mode", OK, encode(rgb.convert("L"), "PNG")),
        Case("mode_LA.png", "mode", OK, encode(rgb.convert("LA"), "PNG")),
        Case("mode_P.png", "mode", OK, encode(rgb.convert("P"), "PNG")),
        Case("mode_P_transparency.png", "mode", OK, encode(p_trns, "PNG", transparency=0)),
        Case("mode_P_transparency.gif", "mode", OK, encode(p_trns, "GIF", transparency=0)),
        Case("mode_RGB.png", "mode", OK, encode(rgb, "PNG")),
        Case("mode_RGBA.png", "mode", OK, encode(rgba, "PNG")),
        Case("mode_RGBA_fully_clear.png", "mode", OK, encode(clear, "PNG")),
        Case("mode_CMYK.jpg", "mode", OK, encode(rgb.convert("CMYK"), "JPEG")),
        Case("mode_CMYK.tif", "mode", OK, encode(rgb.convert("CMYK"), "TIFF")),
        Case("mode_I16.png", "mode", OK, encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")),
        Case("mode_I16_constant.png", "mode", OK, encode(Image.fromarray(np.full((8, 8), 513, np.uint16)), "PNG")),
        Case("mode_I.tif", "mode", OK, encode(Image.fromarray(grey.astype(np.int32) * 100_000 - 7), "TIFF")),
        Case("mode_F.tif", "mode", OK, encode(Image.fromarray(f32), "TIFF")),
        Case("mode_F_nan_inf.tif", "mode", OK, encode(Image.fromarray(f32_bad), "TIFF")),
        Case("mode_YCbCr.jpg", "mode", OK, encode(rgb.convert("YCbCr"), "JPEG")),
        Case("mode_LAB.tif", "mode", OK, encode(rgb.convert("LAB"), "TIFF")),
    ]


def format_cases() -> list[Case]:
    rgb = Image.fromarray(pattern(50, 40))
    cases = [
        Case("format.bmp", "format", OK, encode(rgb, "BMP")),
        Case("format.webp", "format", OK, encode(rgb, "WEBP")),
        Case("format_lossless.webp", "format", OK, encode(rgb.convert("RGBA"), "WEBP", lossless=True)),
        Case("format.ppm", "format", OK, encode(rgb, "PPM")),
        Case("format_progressive.jpg", "format", OK, encode(rgb, "JPEG", progressive=True)),
        Case("animated.gif", "animated", OK, animated("GIF")),
        Case("animated.webp", "animated", OK, animated("WEBP")),
        Case("animated.png", "animated", OK, animated("PNG")),
        Case("animated_300_frames.gif", "animated", OK, animated("GIF", frames=300, size=24)),
        Case("png_named.jpg", "wrong extension", OK, encode(rgb, "PNG")),
        Case("jpeg_named.png", "wrong extension", OK, encode(rgb, "JPEG")),
        Case("gif_named.webp", "wrong extension", OK, encode(rgb.convert("P"), "GIF")),
        Case("webp_named.bmp", "wrong extension", OK, encode(rgb, "WEBP")),
        Case("no_extension", "wrong extension", OK, encode(rgb, "PNG")),
    ]
    return cases


def exif_cases() -> list[Case]:
    return [Case(f"exif_orientation_{o}.jpg", "exif", OK, exif_jpeg(o)) for o in (3, 6, 8)] + [
        Case("exif_orientation_6.png", "exif", OK, exif_jpeg(6, fmt="PNG")),
        Case("exif_orientation_bogus.jpg", "exif", OK, exif_jpeg(77)),
    ]


def size_cases() -> list[Case]:
    return [
        Case("tiny_1x1.png", "size", OK, encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG")),
        Case("tiny_2x3.gif", "size", OK, encode(Image.new("P", (2, 3)), "GIF")),
        Case("wide_5000x1.png", "size", OK, encode(Image.fromarray(pattern(5000, 1)), "PNG")),
        Case("tall_1x5000.png", "size", OK, encode(Image.fromarray(pattern(1, 5000)), "PNG")),
        Case("wide_5000x3.jpg", "size", OK, encode(Image.fromarray(pattern(5000, 3)), "JPEG")),
        Case("big_but_allowed_4000x3000.jpg", "size", OK,
             encode(Image.fromarray(pattern(4000, 3000)), "JPEG", quality=70)),
    ]


def bomb_cases() -> list[Case]:
    return [
        Case("bomb_header_30000x30000.png", "bomb", ERROR, png_header_only(30000, 30000)),
        Case("bomb_header_8000x8000.png", "bomb", ERROR, png_header_only(8000, 8000)),  # under Pillow's own limit
        Case("bomb_real_30000x30000.png", "bomb", ERROR, png_real_bomb(30000)),
        Case("bomb_65000x65000.jpg", "bomb", ERROR, jpeg_with_size(65000, 65000)),
        Case("bomb_65535x65535.gif", "bomb", ERROR, gif_with_size(65535, 65535)),
        Case("bomb_zero_width.png", "bomb", ERROR, png_header_only(0, 100)),
    ]


def damaged_cases(upload_limit_bytes: int) -> list[Case]:
    png = encode(Image.fromarray(pattern(64, 64)), "PNG")
    jpg = encode(Image.fromarray(pattern(64, 64)), "JPEG")
    gif = encode(Image.fromarray(pattern(64, 64)).convert("P"), "GIF")
    idat = png.index(b"IDAT")
    png_flipped = bytearray(png)
    for i in range(idat + 8, min(idat + 60, len(png) - 20)):
        png_flipped[i] ^= 0xFF
    jpg_mid = bytearray(jpg)
    jpg_mid[len(jpg) // 2:len(jpg) // 2 + 40] = b"\x00" * 40
    rng = np.random.default_rng(6)
    return [
        Case("truncated_half.png", "truncated", ERROR, png[: len(png) // 2]),
        Case("truncated_header.png", "truncated", ERROR, png[:20]),
        Case("truncated_half.jpg", "truncated", EITHER, jpg[: len(jpg) // 2]),
        Case("truncated_header.jpg", "truncated", ERROR, jpg[:30]),
        Case("truncated.gif", "truncated", EITHER, gif[: len(gif) // 2]),
        Case("corrupt_idat.png", "corrupt", ERROR, bytes(png_flipped)),
        Case("corrupt_middle.jpg", "corrupt", EITHER, bytes(jpg_mid)),
        Case("png_signature_then_noise.png", "corrupt", ERROR, png[:8] + rng.bytes(500)),
        Case("random_bytes.jpg", "corrupt", ERROR, rng.bytes(4096)),
        Case("oversize_upload.png", "oversize", ERROR, png + b"\x00" * (upload_limit_bytes + 1)),
        Case("empty.png", "empty", ERROR, b""),
        Case("nul_bytes.jpg", "empty", ERROR, b"\x00" * 1024),
    ]


def non_image_cases() -> list[Case]:
    return [
        Case("text.png", "not an image", ERROR, b"just some text, not a picture\n" * 10),
        Case("page.jpg", "not an image", ERROR, b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"),
        Case("archive.png", "not an image", ERROR, zip_bytes()),
        Case("document.png", "not an image", ERROR, b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"),
        Case("drawing.png", "not an image", ERROR, b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        # EPS would make Pillow run Ghostscript; it must be refused before that.
        Case("postscript.jpg", "not an image", ERROR,
             b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n"),
        Case("compressed.jpg", "not an image", ERROR, zlib.compress(b"x" * 1000)),
        Case("unicode_text.gif", "not an image", ERROR, "ここは画像ではありません".encode()),
    ]


def build_corpus(folder: Path, upload_limit_bytes: int) -> list[tuple[Case, Path]]:
    """Write every case into ``folder``; (case, path) pairs, in a stable order."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = (mode_cases() + format_cases() + exif_cases() + size_cases() + bomb_cases()
             + damaged_cases(upload_limit_bytes) + non_image_cases())
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate corpus file names"
    return [(case, case.write(folder)) for case in cases]
