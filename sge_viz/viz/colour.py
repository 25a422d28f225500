"""Colour lookup tables: matplotlib colormaps sampled once into 256 entries, and packed-pixel blending.

Colours come from matplotlib's colormaps, sampled once into 256-entry lookup
tables, so drawing a heatmap is one index lookup instead of a matplotlib figure.
Blending is ``round((1 - alpha) * image) + round(alpha * colour)`` with both
terms precomputed (within 1 level of the exact blend). Pixels are packed as
little-endian uint32 (R, G, B, 0) so lookup, add and layout move one word per
pixel; the two terms never carry across bytes because their sum is at most 255
per channel.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

U32 = np.dtype("<u4")


@lru_cache(maxsize=32)
def colour_table(cmap: str) -> np.ndarray:
    """(256, 3) uint8 samples of a matplotlib colormap, read-only, built once per name."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError as exc:
        raise ValueError(f"unknown colormap {cmap!r}") from exc
    if cm.N != 256:
        cm = cm.resampled(256)
    rgba = cm(np.arange(256))  # integer input: the table entries themselves
    table = np.round(np.asarray(rgba)[:, :3] * 255.0).astype(np.uint8)
    table.setflags(write=False)
    return table


def filled(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A (height, width, 3) uint8 canvas of one colour.

    Written a row at a time: assigning the RGB triple to every pixel (``out[:] = colour``) would run numpy's
    copy loop three bytes at a time."""
    out = np.empty((height, width, 3), np.uint8)
    out.reshape(height, width * 3)[:] = np.tile(np.asarray(colour, np.uint8), width)
    return out


def pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) little-endian uint32 with bytes R, G, B, 0."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] | (rgb[..., 1] << 8) | (rgb[..., 2] << 16)).astype(U32)


def unpack(packed: np.ndarray) -> np.ndarray:
    """(H, W) packed uint32 -> contiguous (H, W, 3) uint8."""
    packed = np.asarray(packed, dtype=U32)
    if packed.ndim != 2 or packed.strides[1] != 4:  # a row-strided slice is viewed as bytes without a copy
        packed = np.ascontiguousarray(packed)
    bytes4 = packed.view(np.uint8).reshape(*packed.shape, 4)
    out = np.empty((*packed.shape, 3), np.uint8)
    # Three single-channel copies beat one (..., :3) slice copy several times over in numpy.
    out[..., 0], out[..., 1], out[..., 2] = bytes4[..., 0], bytes4[..., 1], bytes4[..., 2]
    return out


@lru_cache(maxsize=64)
def blend_table(cmap: str, alpha: float) -> np.ndarray:
    """round(alpha * colour) for each of the 256 table entries, packed.

    Capped so that adding ``_base`` of a white pixel never exceeds 255 (no carry between packed bytes).
    """
    table = np.floor(alpha * colour_table(cmap).astype(np.float64) + 0.5)
    cap = 255.0 - np.ceil((1.0 - alpha) * 255.0 - 0.5)
    packed = pack(np.minimum(table, cap).astype(np.uint8))
    packed.setflags(write=False)
    return packed


def base_layer(image: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * image rounded half down, packed (half down keeps base + colour <= 255).

    Three table lookups (one per channel, already shifted into place) instead of float arithmetic.
    """
    red, green, blue = _base_tables(alpha)
    out = np.take(red, image[..., 0])
    out += np.take(green, image[..., 1])
    out += np.take(blue, image[..., 2])
    return out


@lru_cache(maxsize=64)
def _base_tables(alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    level = np.ceil((1.0 - alpha) * np.arange(256, dtype=np.float64) - 0.5).astype(np.uint32)
    tables = tuple((level << shift).astype(U32) for shift in (0, 8, 16))
    for table in tables:
        table.setflags(write=False)
    return tables


def colour_indices(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Table indices (uint8) as matplotlib computes them: floor(256 * normalised), clipped to 0..255.

    Values outside [vmin, vmax] take the end colours; NaN takes the lowest.
    """
    values = np.asarray(values, dtype=np.float32)
    span = float(vmax) - float(vmin)
    scale = np.float32(256.0 / span) if span > 0 else np.float32(0.0)
    x = (values - np.float32(vmin)) * scale
    np.nan_to_num(x, copy=False, nan=0.0)
    np.clip(x, 0.0, 255.0, out=x)
    return x.astype(np.uint8)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in [0, 1], else ValueError."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha


def colorize(values: np.ndarray, cmap: str = "inferno", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """(h, w) floats -> (h, w, 3) uint8 colours of ``cmap`` over [vmin, vmax]."""
    return colour_table(cmap)[colour_indices(values, vmin, vmax)]
