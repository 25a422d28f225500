"""Text on pictures without matplotlib: legends (colour bars with numbers), captions, stacking, PNG bytes."""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..resize import as_rgb
from .colour import colorize, filled, pack

BACKGROUND = (255, 255, 255)


def colorbar(cmap: str = "inferno", width: int = 256, height: int = 16, vmin: float = 0.0, vmax: float = 1.0,
             labels: bool = True) -> np.ndarray:
    """Legend strip: ``cmap`` from vmin (left) to vmax (right), (height, width, 3).

    With ``labels`` a text row below names vmin, the middle and vmax, so the
    picture is (height + text row, width, 3).
    """
    ramp = np.linspace(vmin, vmax, width, dtype=np.float64)
    strip = np.repeat(colorize(ramp[None, :], cmap, vmin, vmax), height, axis=0)
    if not labels:
        return strip
    size = max(9, min(13, height))
    row = filled(size + 4, width, BACKGROUND)
    texts = [_format_tick(vmin), _format_tick((vmin + vmax) / 2), _format_tick(vmax)]
    sprites = [text_sprite(t, size, (0, 0, 0), BACKGROUND) for t in texts]
    for sprite, x in zip(sprites, (0, (width - sprites[1].shape[1]) // 2, width - sprites[2].shape[1])):
        paste(row, sprite, max(0, x), 2)
    return np.concatenate([strip, row])


def caption(image: np.ndarray, text: str, size: int = 13) -> np.ndarray:
    """The image with a white strip above it holding ``text``, wrapped at spaces to the image's width (several
    lines when needed, never clipped; a single word wider than the image is cut at characters)."""
    image = as_rgb(image)
    lines = wrap(text, size, image.shape[1] - 2 * MARGIN)
    line_height = size + 4
    strip = filled(len(lines) * line_height + 4, image.shape[1], BACKGROUND)
    for i, line in enumerate(lines):
        paste(strip, text_sprite(line, size, (0, 0, 0), BACKGROUND), MARGIN, MARGIN + i * line_height)
    return np.concatenate([strip, image])


MARGIN = 4  # px between a caption's text and the picture's edge


def text_width(text: str, size: int) -> int:
    """Width in px of ``text`` as ``text_sprite`` draws it at ``size``."""
    return int(text_sprite(text, size, (0, 0, 0), BACKGROUND).shape[1])


def wrap(text: str, size: int, width: int) -> list[str]:
    """``text`` as lines that each fit ``width`` px at ``size``: broken at spaces, a word wider than ``width``
    broken between characters. At least one line (possibly empty)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if text_width(candidate, size) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            while text_width(word, size) > width and len(word) > 1:  # one word wider than the picture
                cut = 1
                while cut + 1 < len(word) and text_width(word[:cut + 1], size) <= width:
                    cut += 1
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines


def stack(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images one below the other, left-aligned, on a white background."""
    width = max(im.shape[1] for im in images)
    height = sum(im.shape[0] for im in images) + gap * (len(images) - 1)
    out = filled(height, width, BACKGROUND)
    y = 0
    for im in images:
        out[y:y + im.shape[0], :im.shape[1]] = im
        y += im.shape[0] + gap
    return out


def to_png_bytes(image: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG encoding of an RGB array; zlib's fastest level by default (these are written often: 17 per
    analysed image)."""
    buffer = io.BytesIO()
    Image.fromarray(as_rgb(image)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _format_tick(value: float) -> str:
    return f"{value:.3g}"


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=2048)
def text_sprite(text: str, size: int, fg: tuple[int, int, int], bg: tuple[int, int, int]) -> np.ndarray:
    """Rendered text on a solid box, (h, w, 3) uint8, cached (labels repeat across layers)."""
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    pad = 2
    box = Image.new("RGB", (right - left + 2 * pad, max(bottom, size) - min(top, 0) + pad), bg)
    ImageDraw.Draw(box).text((pad - left, pad // 2 - min(top, 0)), text, fill=fg, font=font)
    out = np.asarray(box).copy()
    out.setflags(write=False)
    return out


@lru_cache(maxsize=2048)
def label_sprite(text: str, size: int) -> np.ndarray:
    """A tile label (white on black), packed for the mosaic canvas."""
    packed = pack(text_sprite(text, size, (255, 255, 255), (0, 0, 0)))
    packed.setflags(write=False)
    return packed


def paste(target: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Copy ``sprite`` into ``target`` at column x, row y, clipped at the target's edges."""
    h = min(sprite.shape[0], target.shape[0] - y)
    w = min(sprite.shape[1], target.shape[1] - x)
    if h > 0 and w > 0:
        target[y:y + h, x:x + w] = sprite[:h, :w]


def stamp_text(target: np.ndarray, text: str, x: int, y: int, size: int) -> None:
    """White-on-black ``text`` pasted into ``target`` at (x, y)."""
    paste(target, text_sprite(text, size, (255, 255, 255), (0, 0, 0)), x, y)
