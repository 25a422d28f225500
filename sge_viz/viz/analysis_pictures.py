"""An analysis's pictures as the files carry them (``sge_viz.io.export.write_analysis``): a mosaic per layer, the
overlay of the deepest layer's most selective group, and each 1-D or 3-D gate's figure. Each gate picture is
captioned, has the 0..1 colour bar under it and the image's out-of-domain verdict on top, and is drawn at least
at the page's sizes (the page's ``mosaic_tile``; ``enlarged`` as ``sge_viz.app.views.view_image``)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..metrics.gates import selectivity_order
from .draw import enlarged, mosaic, mosaic_tile, overlay
from .figures import figure_pixels, other_gate_figure
from .text import caption, colorbar, stack
from .verdict import mark

if TYPE_CHECKING:
    from ..capture.analysis import Analysis

CMAP = "inferno"


def analysis_pictures(analysis: Analysis, mosaic_layers: Sequence[str] | None = None, tile: int | None = None
                      ) -> Iterator[tuple[str, np.ndarray]]:
    """(file name, picture (H, W, 3) uint8) of every picture of the files, drawn one at a time:
    ``mosaic_<layer>.png`` for each layer in ``mosaic_layers`` (default: every layer), ``overlay.png``, and
    ``other_<layer>.png`` for each gate over a 1-D or 3-D input."""
    image = enlarged(analysis.image)  # once for every picture (a Lanczos resize each)
    for layer in analysis.layers:
        if mosaic_layers is None or layer.name in mosaic_layers:
            yield f"mosaic_{layer.name}.png", mosaic_picture(analysis, layer.name, tile, image)
    yield "overlay.png", overlay_picture(analysis, image)[0]
    for name, gate in analysis.other_gates.items():
        yield f"other_{name}.png", figure_pixels(other_gate_figure(name, gate))


def mosaic_picture(analysis: Analysis, layer_name: str, tile: int | None = None,
                   image: np.ndarray | None = None) -> np.ndarray:
    """A layer's mosaic (``tile`` px per group, default the page's ``mosaic_tile``) with a caption that says what
    it shows. ``image``: the analysis's image as ``enlarged`` gives it (computed when not given; a caller drawing
    every layer passes it once)."""
    layer = analysis.layer(layer_name)
    groups, height, width = layer.gate.shape
    image = enlarged(analysis.image) if image is None else image
    picture = mosaic(image, layer.gate, cmap=CMAP, tile=tile or mosaic_tile(groups))
    return _framed(picture, [f"{layer.name}: the SGE gate of each of its {groups} groups",
                             f"gate map {height}x{width} per group; tile label = group"], analysis)


def overlay_picture(analysis: Analysis, image: np.ndarray | None = None) -> tuple[np.ndarray, str, int]:
    """The deepest layer's most selective group over the image, captioned with the full layer name; also
    (layer, group). ``image``: as for ``mosaic_picture``."""
    layer = analysis.layers[-1]
    group = selectivity_order(layer.gate)[0]
    image = enlarged(analysis.image) if image is None else image
    picture = overlay(image, layer.gate[group], cmap=CMAP)
    lines = [f"{layer.name}, group {group} of {layer.groups}", "its most selective group (deepest layer)"]
    return _framed(picture, lines, analysis), layer.name, group


def _framed(picture: np.ndarray, lines: list[str], analysis: Analysis) -> np.ndarray:
    """A picture of gates under its caption lines (each wrapped to its width), over the 0..1 colour bar, with the
    out-of-domain verdict on top."""
    for line in reversed(lines):
        picture = caption(picture, line, size=13)
    legend = colorbar(CMAP, width=picture.shape[1], vmin=0.0, vmax=1.0)
    return mark(stack([picture, legend, caption(legend[:0], "gate value (0 to 1)")]), analysis.ood)
