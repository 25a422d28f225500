"""Pictures of the class evidence, each with its colour bar and units: the CAM, a group's gate, and the
layer's mosaic ordered by contribution with every tile framed by the sign of its contribution. Each carries
the image's out-of-domain verdict as a strip on top (``sge_viz.viz.verdict.mark``)."""
from __future__ import annotations

import numpy as np

from .. import viz
from ..viz.verdict import mark
from .evidence import Evidence

CAM_CMAP = "turbo"  # the CAM's own colours, so it is never mistaken for a gate (inferno)
GATE_CMAP = "inferno"
FOR_CLASS = (220, 30, 30)  # frame of a group whose contribution is > 0
AGAINST = (30, 90, 230)  # < 0
NO_EVIDENCE = 0.005  # a target probability below this is called no evidence on the CAM picture


def _legend(cmap: str, width: int, vmin: float, vmax: float, text: str) -> np.ndarray:
    return viz.caption(viz.colorbar(cmap, width=width, height=14, vmin=vmin, vmax=vmax), text, size=11)


def cam_picture(evidence: Evidence, alpha: float = 0.5) -> np.ndarray:
    """The CAM over the image, captioned (target, probability, layer), with its colour bar; (H, W, 3) uint8."""
    image = viz.enlarged(evidence.image)
    picture = viz.overlay(image, evidence.cam, cmap=CAM_CMAP, alpha=alpha)
    t = evidence.target
    title = f"Grad-CAM at {evidence.cam_layer} for '{t.label}' (#{t.index}, p={t.probability:.3f})"
    if t.probability < NO_EVIDENCE:
        # Grad-CAM scales every map to 0..1, so a class the model gives no weight to still gets a full-red map.
        picture = viz.caption(picture, f"p < {NO_EVIDENCE}: the model sees no evidence for this class here; the map "
                                       "is stretched to 0..1 anyway and shows noise, not evidence", size=11)
    legend = _legend(CAM_CMAP, picture.shape[1], 0.0, 1.0, "Grad-CAM, relative: 0 = no evidence, 1 = the most")
    return mark(viz.stack([viz.caption(picture, title, size=11), legend]), evidence.ood)


def gate_picture(evidence: Evidence, layer: str, group: int, alpha: float = 0.5) -> np.ndarray:
    """One group's gate over the image on the layer's gate range, captioned with its contribution."""
    gates = evidence.gates[layer]
    lo, hi = float(gates.min()), float(gates.max())
    lo, hi = (lo, hi) if hi > lo else (0.0, 1.0)
    image = viz.enlarged(evidence.image)
    picture = viz.overlay(image, gates[group], cmap=GATE_CMAP, alpha=alpha, vmin=lo, vmax=hi)
    c = float(evidence.contributions[layer][group])
    title = f"{layer} g{group}: SGE gate, contribution {c:+.3g} logit"
    legend = _legend(GATE_CMAP, picture.shape[1], lo, hi, "SGE gate (unitless, 0..1), this layer's range")
    return mark(viz.stack([viz.caption(picture, title, size=11), legend]), evidence.ood)


def signed_mosaic(evidence: Evidence, layer: str, tile: int | None = None, highlight: int | None = None) -> np.ndarray:
    """Every group's gate of ``layer``, most contributing first, each tile framed red (contribution > 0)
    or blue (< 0); the ``highlight`` group gets a thicker frame. With a caption and the gate colour bar.
    ``tile``: px on a tile's longer side, default the page's ``viz.mosaic_tile``."""
    gates = evidence.gates[layer]
    contributions = evidence.contributions[layer]
    order = evidence.ranked(layer)
    _, cols = viz.mosaic_grid(len(order))
    tile = tile or viz.mosaic_tile(len(order))
    lo, hi = float(gates.min()), float(gates.max())
    lo, hi = (lo, hi) if hi > lo else (0.0, 1.0)
    image = viz.enlarged(evidence.image)
    picture = viz.mosaic(image, gates, order=order, cmap=GATE_CMAP, tile=tile, vmin=lo, vmax=hi).copy()
    tile_h, tile_w = viz.tile_shape(tile, image.shape)  # the mosaic's tiles keep the image's aspect
    for position, group in enumerate(order):
        r, c = divmod(position, cols)
        width = max(2, tile // 24) * (2 if group == highlight else 1)
        colour = FOR_CLASS if contributions[group] > 0 else AGAINST
        y, x = r * (tile_h + viz.GAP), c * (tile_w + viz.GAP)
        cell = picture[y:y + tile_h, x:x + tile_w]
        cell[:width], cell[-width:], cell[:, :width], cell[:, -width:] = colour, colour, colour, colour
    titled = viz.caption(viz.caption(picture, "frame: red = for the class, blue = against", size=11),
                         f"{layer}: groups by contribution, largest first", size=11)
    legend = _legend(GATE_CMAP, min(320, picture.shape[1]), lo, hi, "SGE gate (unitless), this layer's range")
    return mark(viz.stack([titled, legend]), evidence.ood)
