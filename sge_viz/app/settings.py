"""The single-image view's settings as one value: ``ViewSettings`` (layer, group, order, colour map, opacity,
scale, contrast, cells), what the page's handlers share instead of eight loose positional values.

``FIELDS`` names the settings in the order Gradio passes the controls' values; each name is also the control's
attribute on ``handlers.Page``. ``view_settings`` turns those values into a ``ViewSettings`` (the one adapter),
and ``takes_view`` lets Gradio call a handler that takes a ``view: ViewSettings`` parameter.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from ..errors import SGEVizError
from .views import COLORMAPS, Cells, Contrast, Order, Scale


@dataclass(frozen=True)
class ViewSettings:
    """How the single-image view draws an analysis. ``layer`` None: the analysis's default layer; ``group``
    None: the layer's most selective group (a group outside the layer is the handler's to refuse)."""

    layer: str | None = None
    group: int | None = None
    order: Order = Order.SELECTIVE
    cmap: str = COLORMAPS[0]
    alpha: float = 0.5
    scale: Scale = Scale.LAYER
    contrast: Contrast = Contrast.ABSOLUTE
    cells: Cells = Cells.SMOOTH

    def at(self, layer: str, group: int) -> ViewSettings:
        """The same settings on another layer and group."""
        return replace(self, layer=layer, group=group)


FIELDS = ("layer", "group", "order", "cmap", "alpha", "scale", "contrast", "cells")


def view_settings(layer: Any = None, group: Any = None, order: Any = None, cmap: Any = None, alpha: Any = None,
                  scale: Any = None, contrast: Any = None, cells: Any = None) -> ViewSettings:
    """The controls' values as Gradio sends them (raw: numbers may be strings) as a ``ViewSettings``.

    None (or "") takes the default; a group that is not a whole number is None. Raises SGEVizError for an
    order, colour map, scale, contrast or cells value the page does not offer, or an opacity outside 0..1."""
    default = ViewSettings()

    def choice(kind, value, fallback):
        if value in (None, ""):
            return fallback
        try:
            return kind(value)
        except ValueError:
            offered = ", ".join(repr(k.value) for k in kind)
            raise SGEVizError(f"Unknown {kind.__name__.lower()} {value!r}; use one of {offered}.") from None

    if cmap in (None, ""):
        cmap = default.cmap
    elif cmap not in COLORMAPS:
        raise SGEVizError(f"Unknown colour map {cmap!r}; use one of {', '.join(COLORMAPS)}.")
    opacity = default.alpha if alpha in (None, "") else _number(alpha)
    if opacity is None or not 0.0 <= opacity <= 1.0:
        raise SGEVizError(f"Opacity {alpha!r} is outside 0..1.")
    number = _number(group)
    return ViewSettings(
        layer=str(layer) if layer else None,
        group=int(number) if number is not None and number.is_integer() else None,
        order=choice(Order, order, default.order),
        cmap=str(cmap),
        alpha=opacity,
        scale=choice(Scale, scale, default.scale),
        contrast=choice(Contrast, contrast, default.contrast),
        cells=choice(Cells, cells, default.cells),
    )


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def takes_view(fn: Callable) -> Callable:
    """``fn(..., view: ViewSettings, ...)`` as an event function: Gradio passes the values of the ``FIELDS``
    controls where ``view`` stands, and ``view_settings`` makes them one value. The other parameters (a
    ``gr.Progress`` default included) keep their places, so Gradio still finds them.

    An invalid value becomes the event's error message (gr.Error)."""
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("view")
    n = len(FIELDS)

    def event(*args, **kwargs):
        try:
            view = view_settings(*args[at:at + n])
        except SGEVizError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return fn(*args[:at], view, *args[at + n:], **kwargs)

    controls = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in FIELDS]
    event.__signature__ = signature.replace(parameters=params[:at] + controls + params[at + 1:])
    event.__name__ = event.__qualname__ = getattr(fn, "__name__", "event")
    return event
