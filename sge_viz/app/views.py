"""The page's pictures and tables: pure functions of an ``Analysis`` that never touch the model.

Everything a user changes after an analysis (layer, group, colour map, opacity,
colour scale, ordering) redraws through these functions alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .. import viz
from ..capture.analysis import Analysis, LayerGates
from ..errors import SGEVizError
from ..metrics import gates as stats
from ..metrics.localisation import gate_mask_auc


class Order(str, Enum):
    """How the mosaic orders a layer's groups."""

    MODEL = "model order"
    SELECTIVE = "most selective first"


class Scale(str, Enum):
    """Heatmap colour scale: the layer's own min..max (trained gates often sit in a narrow band, e.g.
    0.6-0.85, where 0..1 shows almost nothing), or the gate's full range 0..1 (same colours in every layer)."""

    LAYER = "this layer's range"
    FULL = "gate range 0 to 1"


COLORMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo", "gray")
TILE = 96  # largest mosaic tile side in pixels
MOSAIC_WIDTH = 576  # about the width the page gives the mosaic: more pixels would only be scaled down
MIN_VIEW_SIDE = 320  # small inputs (the demo's 64x64 canvases) are enlarged before drawing over them


def mosaic_tile(groups: int) -> int:
    """Tile side for a layer's mosaic: up to TILE px, smaller when many groups share the width.

    viz.group_at must be given the same value. 8 groups -> 96 px, 64 groups -> 70 px.
    """
    _, columns = viz.mosaic_grid(groups)
    return max(48, min(TILE, MOSAIC_WIDTH // columns - viz.GAP))


def group_order(layer: LayerGates, order: Order | str) -> list[int]:
    """The layer's group indices in the mosaic's order."""
    if Order(order) is Order.SELECTIVE:
        return list(stats.selectivity_order(layer.gate))
    return list(range(layer.groups))


def most_selective(layer: LayerGates) -> int:
    """The group whose gate varies most across the image relative to its mean (highest selectivity)."""
    return int(stats.selectivity_order(layer.gate)[0])


def default_layer(analysis: Analysis, min_side: int = 14) -> str:
    """The deepest layer whose gate maps are still at least ``min_side`` wide (e.g. layer3.5.sge in
    SGE-ResNet50, layer2.1.sge in the demo model): semantic, yet detailed enough to read."""
    wide = [lg.name for lg in analysis.layers if lg.gate.shape[2] >= min_side]
    return wide[-1] if wide else analysis.layer_names[-1]


def view_image(analysis: Analysis) -> np.ndarray:
    """The network's crop (S, S, 3) uint8, enlarged by a whole factor when S < MIN_VIEW_SIDE so heatmaps
    over it are readable."""
    image = analysis.image
    side = image.shape[0]
    if side >= MIN_VIEW_SIDE:
        return image
    scale = -(-MIN_VIEW_SIDE // side)
    return np.asarray(Image.fromarray(image).resize((side * scale, side * scale), Image.LANCZOS))


def view_mask(analysis: Analysis) -> np.ndarray | None:
    """The item mask at the size of ``view_image``, or None."""
    mask = analysis.mask
    if mask is None:
        return None
    side = view_image(analysis).shape[0]
    if mask.shape[0] == side:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.NEAREST)) >= 128


def _outlined(analysis: Analysis, picture: np.ndarray) -> np.ndarray:
    mask = view_mask(analysis)
    return picture if mask is None else viz.draw_outline(picture, mask)


def colour_range(lg: LayerGates, scale: Scale | str = Scale.LAYER) -> tuple[float, float]:
    """(vmin, vmax) of the gate heatmaps for a scale choice."""
    if Scale(scale) is Scale.LAYER:
        lo, hi = float(lg.gate.min()), float(lg.gate.max())
        if hi > lo:
            return lo, hi
    return 0.0, 1.0


def render_mosaic(analysis: Analysis, layer: str, order: Order | str, cmap: str, alpha: float,
                  focus: int | None = None, scale: Scale | str = Scale.LAYER) -> np.ndarray:
    """Every group's gate of one layer over the image, in the chosen order, the focused group framed."""
    lg = analysis.layer(layer)
    vmin, vmax = colour_range(lg, scale)
    return viz.mosaic(view_image(analysis), lg.gate, order=group_order(lg, order), cmap=cmap, alpha=alpha,
                         tile=mosaic_tile(lg.groups), highlight=focus, vmin=vmin, vmax=vmax)


def clicked_group(analysis: Analysis, layer: str, order: Order | str, x: int, y: int) -> int | None:
    """The group drawn at pixel (x, y) of the layer's mosaic in this order, or None (a gap or an empty cell)."""
    lg = analysis.layer(layer)
    return viz.group_at(x, y, lg.groups, tile=mosaic_tile(lg.groups), order=group_order(lg, order))


@dataclass
class FocusViews:
    """The pictures of one focused group."""

    overlay: np.ndarray  # gate over the image
    diverging: np.ndarray  # enhanced (red) vs suppressed (blue) relative to the group's mean gate
    activations: np.ndarray  # group activation before | after SGE
    gate_legend: np.ndarray
    diverging_legend: np.ndarray
    caption: str


def render_focus(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                 scale: Scale | str = Scale.LAYER) -> FocusViews:
    """The focused group's overlay, enhanced/suppressed map, before/after pair, legends and caption."""
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    image = view_image(analysis)
    gate = lg.gate[group]
    g = stats.group_stats(lg.gate[group:group + 1])
    caption = (f"**{analysis.image_name}** · `{layer}` · group **{group}** of {lg.groups} · "
               f"gate map {gate.shape[0]}x{gate.shape[1]} · mean gate {float(g.mean[0]):.3f} · "
               f"spread {float(g.std[0]):.3f} · enhanced share {float(g.enhanced_share[0]):.0%} · "
               f"selectivity {float(g.selectivity[0]):.3f}")
    return FocusViews(
        overlay=_outlined(analysis, viz.overlay(image, gate, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)),
        diverging=_outlined(analysis, viz.diverging(image, gate)),
        activations=viz.activation_pair(image, lg.before[group], lg.after[group]),
        gate_legend=legend(cmap, "gate: suppressed", "passed", vmin=vmin, vmax=vmax),
        diverging_legend=legend("bwr", "below the group's mean gate", "above it (enhanced)", ticks=False),
        caption=caption,
    )


def check_group(lg: LayerGates, group: int) -> int:
    """``group`` as an int when the layer has it, else the project's error naming the valid range."""
    group = int(group)
    if not 0 <= group < lg.groups:
        raise SGEVizError(f"Group {group} does not exist in {lg.name}: it has groups 0 to {lg.groups - 1}.")
    return group


@lru_cache(maxsize=64)
def legend(cmap: str, left: str, right: str, width: int = 320, ticks: bool = True, vmin: float = 0.0,
           vmax: float = 1.0) -> np.ndarray:
    """A colour bar (with vmin / middle / vmax ticks when ``ticks``) and its meaning under both ends.

    Cached (read-only result): the same legend is asked for on every redraw of a layer.
    """
    bar = viz.colorbar(cmap, width=width, height=14, vmin=vmin, vmax=vmax, labels=ticks)
    canvas = Image.new("RGB", (width, bar.shape[0] + 16), (255, 255, 255))
    canvas.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, bar.shape[0] + 2), left, fill=(40, 40, 40))
    draw.text((width - draw.textlength(right) - 2, bar.shape[0] + 2), right, fill=(40, 40, 40))
    picture = np.array(canvas)
    picture.setflags(write=False)
    return picture


def compare_panel(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                  scale: Scale | str = Scale.LAYER) -> tuple[np.ndarray, str]:
    """One pinned (image, layer, group) view for the compare row, with its caption."""
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    picture = _outlined(analysis, viz.overlay(view_image(analysis), lg.gate[group], cmap=cmap, alpha=alpha,
                                                 vmin=vmin, vmax=vmax))
    caption = f"{analysis.image_name} · {layer} · group {group}"
    if (vmin, vmax) != (0.0, 1.0):
        caption += f" · scale {vmin:.2f}-{vmax:.2f}"
    return picture, caption


# --- statistics ---------------------------------------------------------------------

TABLE_HEADERS = ["rank", "group", "selectivity", "mean", "std", "min", "max", "enhanced"]


def group_table(analysis: Analysis, layer: str) -> tuple[list[str], list[list]]:
    """Groups ranked by selectivity, most selective first; with a mask-AUC column for example scenes."""
    lg = analysis.layer(layer)
    gs = stats.group_stats(lg.gate)
    auc = gate_mask_auc(lg.gate, analysis.mask) if analysis.mask is not None else None
    headers = TABLE_HEADERS + (["item AUC"] if auc is not None else [])
    rows = []
    for rank, g in enumerate(stats.selectivity_order(lg.gate), start=1):
        row = [rank, int(g)] + [round(float(v[g]), 3) for v in
                                (gs.selectivity, gs.mean, gs.std, gs.min, gs.max, gs.enhanced_share)]
        if auc is not None:
            row.append(round(float(auc[g]), 3))
        rows.append(row)
    return headers, rows


def analysis_stats(analysis: Analysis) -> dict:
    """stats.json for this analysis, with the mask-AUC column for example scenes."""
    return stats.analysis_stats(analysis, analysis.mask)
