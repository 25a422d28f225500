"""The out-of-domain verdict as a mark on pictures: every picture of gates or evidence says whether the image
lies inside what the model knows.

``ood`` everywhere is a ``sge_viz.domain.Verdict``, or None for a model with no measured signal (a gates-only
model), which says so. The verdict and its words are the domain room's; this module draws them.
"""
from __future__ import annotations

import numpy as np

from ..domain.verdict import NO_SIGNAL, Verdict, verdict_text
from ..resize import as_rgb
from .colour import filled
from .text import paste, text_sprite

OUT_BG, OUT_FG = (190, 20, 20), (255, 255, 255)  # out of domain: white on red
IN_BG, IN_FG = (222, 240, 222), (20, 80, 20)  # in domain: dark green on pale green
NONE_BG, NONE_FG = (232, 232, 232), (60, 60, 60)  # no signal: dark grey on light grey
SIZE = 12  # px of the mark's text
HEIGHT = SIZE + 8  # px of the strip ``mark`` adds above a picture


def mark(picture: np.ndarray, ood: Verdict | None, reserve: int = 0) -> np.ndarray:
    """``picture`` (H, W, 3) uint8 with a strip of HEIGHT px above it saying the verdict: red when out of
    domain, pale green when in, grey when the model has no signal. (H + HEIGHT, W, 3) uint8.

    The text fits the strip whole, less ``reserve`` px on the right (the app's corner buttons cover them):
    the full verdict, else its words alone, else the shortest form. Positions in the picture move down by
    exactly HEIGHT (``unmark_y`` maps a click back)."""
    picture = as_rgb(picture)
    bg, fg = (NONE_BG, NONE_FG) if ood is None else (OUT_BG, OUT_FG) if ood.out_of_domain else (IN_BG, IN_FG)
    strip = filled(HEIGHT, picture.shape[1], bg)
    room = picture.shape[1] - 8 - reserve
    for text in verdict_forms(ood):
        sprite = text_sprite(text, SIZE, fg, bg)
        if sprite.shape[1] <= room:
            break
    paste(strip, sprite, 4, (HEIGHT - sprite.shape[0]) // 2)
    return np.concatenate([strip, picture])


def verdict_forms(ood: Verdict | None) -> tuple[str, ...]:
    """The verdict's texts for a picture, longest first (``mark`` takes the first that fits)."""
    if ood is None:
        return NO_SIGNAL, "no OOD signal", "no signal"
    if ood.out_of_domain:
        return verdict_text(ood, short=True), "OUT OF DOMAIN", "OUT"
    return verdict_text(ood, short=True), "in domain", "in"


def unmark_y(y: float) -> float:
    """A y coordinate in a ``mark``ed picture as a y in the picture under the strip (negative: on the strip)."""
    return y - HEIGHT
