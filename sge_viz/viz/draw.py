"""Pictures of gates: overlays, diverging maps, before/after pairs, outlines and per-layer mosaics.

Pure numpy + Pillow over plain arrays; nothing here knows about torch. Every
image is a uint8 RGB array (H, W, 3); gate maps are float arrays (h, w) or
(G, h, w) with values in [0, 1] unless a ``vmin``/``vmax`` says otherwise.

Speed notes for the mosaic (64 tiles per layer, 16 layers for SGE-ResNet50):
all G maps are resized at once with two small matrix products, and each tile
pixel costs one table lookup and one add (see ``colour``).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from PIL import Image

from ..resize import as_rgb, gapped_resize_matrix, one_blas_thread, resize_image, resize_maps
from .colour import base_layer, blend_table, check_alpha, colour_indices, filled, pack, unpack
from .text import BACKGROUND, label_sprite, stamp_text

GAP = 2  # pixels between mosaic tiles
MAX_TILE = 96  # px per mosaic tile at most
MOSAIC_WIDTH = 576  # about the width the page gives a mosaic: more pixels would only be scaled down
MIN_SIDE = 320  # px: pictures over a smaller crop (the demo's 64x64) enlarge it first, so heatmaps stay readable
HIGHLIGHT = (0, 200, 255)


def enlarged(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``image`` (H, W, 3) uint8 enlarged by the smallest whole factor (Lanczos) that makes its shorter side at
    least ``min_side``, the aspect ratio kept; itself when it already is."""
    height, width = image.shape[:2]
    if min(height, width) >= min_side:
        return image
    factor = -(-min_side // min(height, width))
    return np.asarray(Image.fromarray(image).resize((width * factor, height * factor), Image.LANCZOS))


def overlay(image: np.ndarray, gate_map: np.ndarray, cmap: str = "inferno", alpha: float = 0.5,
            vmin: float = 0.0, vmax: float = 1.0, smooth: bool = True) -> np.ndarray:
    """``gate_map`` (h, w) upsampled to the image (bilinearly, or nearest with ``smooth=False``) and
    alpha-blended over it."""
    image, alpha = as_rgb(image), check_alpha(alpha)
    height, width = image.shape[:2]
    idx = colour_indices(resize_maps(gate_map, height, width, smooth), vmin, vmax)
    packed = np.take(blend_table(cmap, alpha), idx)
    packed += base_layer(image, alpha)
    return unpack(packed)


def diverging_limit(gate_map: np.ndarray, limit: float | None = None) -> float:
    """The half-range of the diverging scale: ``limit`` when given (absolute scale), else the map's own
    largest |gate - mean| (relative scale; 1.0 for a perfectly flat map)."""
    if limit is not None:
        if not limit > 0:
            raise ValueError(f"limit must be positive, got {limit}")
        return float(limit)
    gate_map = np.asarray(gate_map, dtype=np.float32)
    own = float(np.abs(gate_map - np.float32(gate_map.mean(dtype=np.float64))).max()) if gate_map.size else 0.0
    return own if own > 0 else 1.0


def diverging(image: np.ndarray, gate_map: np.ndarray, alpha: float = 0.6, limit: float | None = None,
              smooth: bool = True) -> np.ndarray:
    """Gate minus its spatial mean: red = enhanced (above the mean), blue = suppressed, white = at the mean.

    Drawn over a grey copy of the image, so every colour comes from the map. The scale is symmetric,
    -L..+L with L = ``diverging_limit(gate_map, limit)``: a fixed ``limit`` (absolute scale) keeps a flat
    gate near-white; ``limit=None`` stretches each map to its own largest deviation (relative scale).
    """
    gate_map = np.asarray(gate_map, dtype=np.float32)
    centred = gate_map - np.float32(gate_map.mean(dtype=np.float64))
    limit = diverging_limit(gate_map, limit)
    grey = as_rgb(image).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = np.repeat(np.clip(grey + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return overlay(grey, centred, cmap="bwr", alpha=alpha, vmin=-limit, vmax=limit, smooth=smooth)


def activation_range(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(vmin, vmax) shared by the before and after maps."""
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    return float(min(before.min(), after.min())), float(max(before.max(), after.max()))


def activation_pair(image: np.ndarray, before: np.ndarray, after: np.ndarray, cmap: str = "viridis",
                    alpha: float = 0.6, smooth: bool = True, vmin: float | None = None,
                    vmax: float | None = None) -> np.ndarray:
    """The group's activation before vs after SGE side by side, (S, 2S + GAP, 3), one shared colour scale
    (``activation_range`` unless vmin/vmax are given)."""
    image = as_rgb(image)
    before, after = np.asarray(before, np.float32), np.asarray(after, np.float32)
    lo, hi = activation_range(before, after)
    vmin, vmax = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    left = overlay(image, before, cmap, alpha, vmin, vmax, smooth)
    right = overlay(image, after, cmap, alpha, vmin, vmax, smooth)
    height, width = image.shape[:2]
    out = filled(height, 2 * width + GAP, BACKGROUND)
    out[:, :width], out[:, width + GAP:] = left, right
    size = max(10, height // 18)
    stamp_text(out, "before SGE", 2, 2, size)
    stamp_text(out, "after SGE", width + GAP + 2, 2, size)
    return out


def mosaic_grid(groups: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of the mosaic for ``groups`` tiles; square-ish by default."""
    if groups < 1:
        raise ValueError("a mosaic needs at least one tile")
    cols = columns if columns else math.ceil(math.sqrt(groups))
    cols = max(1, min(cols, groups))
    return math.ceil(groups / cols), cols


def mosaic_tile(groups: int) -> int:
    """Tile side in px for a mosaic of ``groups`` groups, on the page and in the files: up to MAX_TILE, smaller
    when many groups share MOSAIC_WIDTH, never below 48 (8 groups -> 96 px, 64 groups -> 70 px). ``group_at``
    must be given the same value."""
    _, columns = mosaic_grid(groups)
    return max(48, min(MAX_TILE, MOSAIC_WIDTH // columns - GAP))


def tile_shape(tile: int, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """(height, width) of a mosaic tile for an image of ``image_shape`` (H, W, ...): ``tile`` px on the
    longer side, the shorter one in proportion, so non-square inputs keep their aspect ratio."""
    height, width = int(image_shape[0]), int(image_shape[1])
    if height == width:
        return tile, tile
    if height > width:
        return tile, max(1, round(tile * width / height))
    return max(1, round(tile * height / width)), tile


def group_at(x: float, y: float, groups: int, tile: int = 96, columns: int | None = None,
             order: list[int] | None = None, image_shape: tuple[int, ...] = (1, 1)) -> int | None:
    """The group index drawn at pixel (x, y) of a mosaic, or None for gaps and empty cells.

    ``groups`` is the layer's group count; with ``order`` the tiles show ``order``'s groups; ``tile`` and
    ``image_shape`` as given to ``mosaic``.
    """
    n = len(order) if order is not None else groups
    rows, cols = mosaic_grid(n, columns)
    tile_h, tile_w = tile_shape(tile, image_shape)
    step_h, step_w = tile_h + GAP, tile_w + GAP
    if x < 0 or y < 0:
        return None
    col, row = int(x) // step_w, int(y) // step_h
    if int(x) - col * step_w >= tile_w or int(y) - row * step_h >= tile_h or col >= cols or row >= rows:
        return None
    position = row * cols + col
    if position >= n:
        return None
    return int(order[position]) if order is not None else position


def mosaic(image: np.ndarray, gates: np.ndarray, order: list[int] | None = None, cmap: str = "inferno",
           alpha: float = 0.5, tile: int = 96, columns: int | None = None, highlight: int | None = None,
           labels: bool = True, vmin: float = 0.0, vmax: float = 1.0, smooth: bool = True) -> np.ndarray:
    """Every group's gate (G, h, w) over the image, one tile each, in ``order`` (default 0..G-1).

    Tiles are ``tile`` px on their longer side with the image's aspect ratio (``tile_shape``), ``GAP`` px
    apart, row by row; each carries its group index ("g12") when ``labels``; the ``highlight`` group gets
    a coloured frame. ``group_at`` inverts this layout.
    """
    image, alpha = as_rgb(image), check_alpha(alpha)
    gates = np.asarray(gates, dtype=np.float32)
    if gates.ndim != 3:
        raise ValueError(f"gates must be (G, h, w), got {gates.shape}")
    groups = gates.shape[0]
    order = list(range(groups)) if order is None else [int(g) for g in order]
    if not order or any(not 0 <= g < groups for g in order):
        raise ValueError(f"order must list group indices in 0..{groups - 1}")
    rows, cols = mosaic_grid(len(order), columns)
    tile_h, tile_w = tile_shape(tile, image.shape)
    step_h, step_w = tile_h + GAP, tile_w + GAP

    # Colour indices in the canvas layout (rows, step, cols, step), gaps included:
    # scale to index units and saturate on the small maps (bilinear weights are
    # non-negative and sum to one, so the resized values stay in [0, 256)), then
    # two matrix products whose resize matrices carry zero rows for the gaps, so
    # the second one writes the finished layout and nothing is transposed at full size.
    n, h, w = len(order), gates.shape[1], gates.shape[2]
    span = float(vmax) - float(vmin)
    small = np.zeros((rows * cols, h, w), np.float32)  # empty cells at the end stay 0
    np.subtract(gates[order] if order != list(range(groups)) else gates, np.float32(vmin), out=small[:n])
    small[:n] *= np.float32(256.0 / span if span > 0 else 0.0)
    np.nan_to_num(small, copy=False, nan=0.0)
    np.clip(small, 0.0, 255.99, out=small)
    rows_m = gapped_resize_matrix(h, tile_h, step_h, smooth)
    cols_m = gapped_resize_matrix(w, tile_w, step_w, smooth)
    with one_blas_thread():
        across = small.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows, h * cols, w) @ cols_m.T
        idx = (rows_m @ across.reshape(rows, h, cols * step_w)).astype(np.uint8)  # (rows, step_h, cols * step_w)

    canvas = np.take(blend_table(cmap, alpha), idx).reshape(rows, step_h, cols, step_w)  # packed pixels
    canvas[:, :tile_h, :, :tile_w] += base_layer(resize_image(image, tile_h, tile_w), alpha)[None, :, None, :]
    background = pack(np.array(BACKGROUND, np.uint8))
    canvas[:, tile_h:], canvas[:, :, :, tile_w:] = background, background
    for position in range(n, rows * cols):
        r, c = divmod(position, cols)
        canvas[r, :, c, :] = background
    canvas = canvas.reshape(rows * step_h, cols * step_w)

    framed, width = None, max(2, tile // 32)
    if highlight is not None and highlight in order:
        framed = order.index(highlight)
        r, c = divmod(framed, cols)
        cell = canvas[r * step_h:r * step_h + tile_h, c * step_w:c * step_w + tile_w]
        colour = pack(np.array(HIGHLIGHT, np.uint8))
        cell[:width], cell[-width:], cell[:, :width], cell[:, -width:] = colour, colour, colour, colour
    if labels:  # after the frame: the focused tile's label sits inside its frame, whole
        size = max(8, min(14, min(tile_h, tile_w) // 7))
        for position, g in enumerate(order):
            sprite = label_sprite(f"g{g}" if tile_w >= 40 else str(g), size)
            r, c = divmod(position, cols)
            inset = width if position == framed else 0
            sh, sw = min(sprite.shape[0], tile_h - inset), min(sprite.shape[1], tile_w - inset)
            y, x = r * step_h + inset, c * step_w + inset
            canvas[y:y + sh, x:x + sw] = sprite[:sh, :sw]
    # Drop the trailing gap so the picture ends at the last tile.
    return unpack(canvas[:rows * step_h - GAP, :cols * step_w - GAP])


def mosaics(image: np.ndarray, layers: list[np.ndarray], orders: list[list[int] | None] | None = None,
            highlights: list[int | None] | None = None, workers: int | None = None, **options) -> list[np.ndarray]:
    """``mosaic`` of several layers' gates over one image, drawn on a few threads at once.

    numpy and the BLAS products release the GIL, so on a machine with idle cores
    the layers draw in parallel; the result is the same as one ``mosaic`` call per layer.
    ``options`` are ``mosaic``'s keyword arguments (cmap, alpha, tile, columns, labels, vmin, vmax).
    """
    orders = orders if orders is not None else [None] * len(layers)
    highlights = highlights if highlights is not None else [None] * len(layers)
    if not len(layers) == len(orders) == len(highlights):
        raise ValueError("layers, orders and highlights must have the same length")

    # mosaic() only uses the image shrunk to one tile: shrink it once for all layers.
    image = as_rgb(image)
    image = resize_image(image, *tile_shape(options.get("tile", 96), image.shape))

    def draw(i: int) -> np.ndarray:
        return mosaic(image, layers[i], order=orders[i], highlight=highlights[i], **options)

    workers = min(len(layers), workers or default_workers())
    if workers <= 1:
        return [draw(i) for i in range(len(layers))]
    return list(_pool(workers).map(draw, range(len(layers))))


def default_workers() -> int:
    """Drawing threads: one per core the process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sge-render")


# --- outlines, legends, captions ----------------------------------------------------

def draw_outline(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """A copy of ``image`` with the boundary of ``mask`` (same height and width, bool) drawn in ``colour``.

    The boundary is every mask pixel with a 4-neighbour outside the mask (or on the image edge).
    """
    image = as_rgb(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    out = image.copy()
    out[mask & ~interior] = colour
    return out
