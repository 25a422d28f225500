"""Pictures: colour tables, the one resizer of gate maps, drawing, text and legends, matplotlib figures.

Everything takes and returns numpy arrays; nothing here knows about torch.
"""
from ..resize import resize_maps
from .colour import colorize, colour_indices, colour_table
from .draw import (
    GAP,
    HIGHLIGHT,
    MIN_SIDE,
    activation_pair,
    activation_range,
    default_workers,
    diverging,
    diverging_limit,
    draw_outline,
    enlarged,
    group_at,
    mosaic,
    mosaic_grid,
    mosaic_tile,
    mosaics,
    overlay,
    tile_shape,
)
from .text import caption, colorbar, stack, to_png_bytes

__all__ = [
    "GAP", "HIGHLIGHT", "MIN_SIDE", "activation_pair", "activation_range", "diverging_limit",
    "caption", "colorbar", "colorize", "colour_indices", "colour_table",
    "default_workers", "diverging", "draw_outline", "enlarged", "group_at", "mosaic", "mosaic_grid", "mosaic_tile",
    "mosaics", "overlay", "resize_maps", "stack", "tile_shape", "to_png_bytes",
]
