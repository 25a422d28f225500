"""Opening user images safely and turning them into what a model sees.

Every Pillow mode becomes RGB, EXIF orientation is honoured, and a pixel limit
refuses decompression bombs before the image is decoded.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import ModelConfig
from .errors import SGEVizError

# Limits are settings: environment variables override the defaults.
MAX_PIXELS = int(os.environ.get("SGE_VIZ_MAX_PIXELS", 50_000_000))
MAX_FILE_BYTES = int(os.environ.get("SGE_VIZ_MAX_UPLOAD_MB", 25)) * 1024 * 1024


def open_image(source: str | Path | bytes | Image.Image, max_pixels: int = MAX_PIXELS,
               max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """An RGB image from a path, raw bytes or a PIL image, or the project's error saying what is wrong."""
    if isinstance(source, Image.Image):
        image, name = source, "the image"
        _check_pixels(image, name, max_pixels)
    else:
        data, name = _read_bytes(source, max_bytes)
        image = _decode(data, name, max_pixels)
    return to_rgb(image, name)


def _read_bytes(source: str | Path | bytes, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), "the uploaded image"
    else:
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise SGEVizError(f"Image {path} does not exist.")
        if path.stat().st_size > max_bytes:
            raise SGEVizError(f"Image {name} is {path.stat().st_size / 2**20:.1f} MB, over the "
                              f"{max_bytes / 2**20:.0f} MB limit: shrink or re-encode it.")
        data = path.read_bytes()
    if not data:
        raise SGEVizError(f"Image {name} is empty (0 bytes).")
    if len(data) > max_bytes:
        raise SGEVizError(f"Image {name} is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
                          "limit: shrink or re-encode it.")
    return data, name


def _check_pixels(image: Image.Image, name: str, max_pixels: int) -> None:
    w, h = image.size
    if w * h > max_pixels:
        raise SGEVizError(f"Image {name} is {w}x{h} = {w * h / 1e6:.0f} megapixels, over the "
                          f"{max_pixels / 1e6:.0f} MP limit: downscale it first.")
    if w < 1 or h < 1:
        raise SGEVizError(f"Image {name} has no pixels ({w}x{h}).")


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # The header gives the size; check it before decoding any pixel data.
            _check_pixels(image, name, max_pixels)
            image.seek(0)  # animated GIF/WebP/APNG: the first frame
            image.load()
    except SGEVizError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SGEVizError(f"Image {name} is too large to decode safely ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise SGEVizError(f"{name} is not an image Pillow can read (PNG, JPEG, GIF, WebP, BMP, TIFF, ...).") from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct_error()) as exc:
        raise SGEVizError(f"Image {name} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
                          "re-export or re-download it.") from exc
    return image


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def to_rgb(image: Image.Image, name: str = "the image") -> Image.Image:
    """Any Pillow mode as 8-bit RGB, upright per EXIF; transparency is composited over white."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not lose the picture
        pass
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scaled = np.zeros_like(arr) if hi <= lo else (np.nan_to_num(arr, nan=lo) - lo) / (hi - lo) * 255.0
        image = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "P" and "transparency" in image.info or mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise SGEVizError(f"Image {name} has colour mode {image.mode!r}, which cannot be converted to RGB.") from exc


def prepare(image: Image.Image, config: ModelConfig) -> tuple[torch.Tensor, np.ndarray]:
    """The model's input tensor (1, 3, S, S) and the RGB crop it sees (S, S, 3) uint8.

    Resize the shorter side (bilinear, antialiased), centre-crop, normalise.
    """
    view = center_crop_view(image, config.resize_size, config.input_size)
    return normalise(view, config).unsqueeze(0), view


def center_crop_view(image: Image.Image, resize_size: int, crop_size: int) -> np.ndarray:
    w, h = image.size
    scale = resize_size / min(w, h)
    new_w, new_h = max(crop_size, round(w * scale)), max(crop_size, round(h * scale))
    if (new_w, new_h) != (w, h):
        # Pillow's resize filters antialias when shrinking, like torchvision's antialias=True.
        image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=None)
    left, top = (new_w - crop_size) // 2, (new_h - crop_size) // 2
    return np.asarray(image.crop((left, top, left + crop_size, top + crop_size)), dtype=np.uint8).copy()


def normalise(view: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 normalised with the model's mean/std."""
    t = torch.from_numpy(view).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (t - mean) / std
