"""Opening user images safely and turning them into what a model sees.

Every Pillow mode becomes RGB, EXIF orientation is honoured, and the limits in
``limits.py`` refuse oversize uploads and decompression bombs before any pixel
is decoded. Only common photo formats are parsed, so exotic decoders (EPS runs
Ghostscript, TGA accepts almost any bytes) never see untrusted input.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import SGEVizError
from ..sniff import describe_bytes
from .limits import current_limits

# Formats Pillow may try on user input (MPO, the multi-picture JPEG of phone cameras, opens as JPEG).
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "PPM")
_FORMAT_HINT = "PNG, JPEG, GIF, WebP, BMP, TIFF, AVIF or PPM"
# File names taken as images when a folder is walked (the same formats as ALLOWED_FORMATS).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".ppm")
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int | None = None,
               max_bytes: int | None = None) -> Image.Image:
    """An RGB image from a path, raw bytes or a PIL image, or the project's error saying what is wrong.

    Limits default to ``current_limits()`` (environment variables), read at call time.
    """
    limits = current_limits()
    max_pixels = limits.max_pixels if max_pixels is None else max_pixels
    max_bytes = limits.max_upload_bytes if max_bytes is None else max_bytes
    if isinstance(source, Image.Image):
        image, name = source, "The image"
        _check_pixels(image, name, max_pixels)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error) as exc:
            raise SGEVizError(f"The image could not be decoded ({type(exc).__name__}: {str(exc)[:120]}): "
                              "re-export or re-download it.") from exc
    else:
        data, name = _read_bytes(source, max_bytes)
        image = _decode(data, name, max_pixels)
    return to_rgb(image, name)


def _read_bytes(source: str | Path | bytes, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "The uploaded file"
    else:
        path = Path(source)
        name = f"Image {path.name!r}"
        if not path.is_file():
            raise SGEVizError(f"Image {path} does not exist or is not a regular file: give the path of an image file.")
        size = path.stat().st_size
        if size > max_bytes:
            raise SGEVizError(_too_big(name, size, max_bytes))
        # Read one byte past the limit, so a file that grows after stat() is still caught.
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    if not data:
        raise SGEVizError(f"{name} is empty (0 bytes): upload the file again.")
    if len(data) > max_bytes:
        raise SGEVizError(_too_big(name, len(data), max_bytes))
    return data, name


def _too_big(name: str, size: int, max_bytes: int) -> str:
    return (f"{name} is {size:,} bytes, over the {max_bytes / 2**20:g} MB ({max_bytes:,} bytes) upload limit "
            "(SGE_VIZ_MAX_UPLOAD_MB): shrink or re-encode it.")


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    w, h = image.size
    if w < 1 or h < 1:
        raise SGEVizError(f"{name} has no pixels ({w}x{h}).")
    if w * h > max_pixels:
        raise SGEVizError(f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the "
                          f"{max_pixels / 1e6:g} MP limit (SGE_VIZ_MAX_PIXELS): downscale it first.")


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        # Image.open reads only the header; check the claimed size before decoding any pixel.
        _check_pixels(image, name, max_pixels)
        image.seek(0)  # animated GIF/WebP/APNG: the first frame
        image.load()
    except SGEVizError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fired (header far beyond its MAX_IMAGE_PIXELS) before ours could.
        raise SGEVizError(f"{name} claims a canvas too large to decode safely (more than the "
                          f"{max_pixels / 1e6:g} MP limit, SGE_VIZ_MAX_PIXELS): downscale it first.") from exc
    except UnidentifiedImageError as exc:
        raise SGEVizError(f"{name} is not an image this tool reads ({describe_bytes(data)}); "
                          f"use {_FORMAT_HINT}.") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            MemoryError, struct.error) as exc:
        raise SGEVizError(f"{name} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
                          "re-export or re-download it.") from exc
    return image


def to_rgb(image: Image.Image, name: str = "The image") -> Image.Image:
    """Any Pillow mode as 8-bit RGB, upright per EXIF; transparency is composited over white."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not lose the picture
        pass
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        image, mode = _stretch_to_l(image), "L"
    if mode == "La":  # premultiplied grey + alpha, which Pillow cannot convert: over white is l + 255 - a
        la = np.asarray(image, dtype=np.int32)
        image, mode = Image.fromarray(np.clip(la[..., 0] + 255 - la[..., 1], 0, 255).astype(np.uint8), "L"), "L"
    if mode == "P" and "transparency" in image.info or mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise SGEVizError(f"{name} has colour mode {image.mode!r}, which cannot be converted to RGB.") from exc


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float pixels stretched to 0..255 over their own finite range."""
    arr = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(arr)
    lo, hi = (float(arr[finite].min()), float(arr[finite].max())) if finite.any() else (0.0, 0.0)
    if hi <= lo:
        scaled = np.zeros_like(arr)
    else:
        scaled = (np.where(finite, arr, lo) - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
