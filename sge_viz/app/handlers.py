"""Event handlers of the page and the named API endpoints. Only ``show_image`` and ``api_analyze`` run the
network; every other event redraws from the captured gates (``views``)."""
from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from ..capture.analysis import Analysis
from ..device import describe_device, pick_device
from ..errors import SGEVizError
from ..io import export
from ..io.examples import example_paths, truth_mark
from ..io.tempfiles import download_folder, png_path
from ..viz import figures
from . import views
from .catalogue import ModelService
from .settings import ViewSettings
from .views import Order

STATISTICS = "Statistics"  # the sub-tab holding the depth and histogram plots


class Page:
    """The Single image tab's components that handlers read or write; ``single_tab.build_single_tab`` sets
    each one. The view controls are named as ``settings.FIELDS``."""

    state: gr.State  # this browser session's Analysis
    pins: gr.State  # [(picture, caption), ...] of the compare panels
    stats_open: gr.State  # whether the Statistics sub-tab is shown (its plots are drawn only then)
    more: gr.Tabs  # the sub-tabs under the views
    image: gr.Image
    model: gr.Dropdown
    run: gr.Button
    info: gr.Markdown
    card: gr.Accordion  # "What this model knows", under the predictions: holds the domain card
    domain: gr.Markdown  # what the model knows (the domain card)
    ood: gr.Markdown  # the out-of-domain note of the current image
    predictions: gr.Label
    truth: gr.Markdown  # an example scene's true class and whether the model is right
    layer: gr.Dropdown
    order: gr.Radio
    mosaic: gr.Image
    layer_mean: gr.Image
    mosaic_legend: gr.Image
    group: gr.Slider
    keep_group: gr.Checkbox
    cmap: gr.Dropdown
    alpha: gr.Slider
    scale: gr.Radio
    contrast: gr.Radio
    cells: gr.Radio
    caption: gr.Markdown
    overlay: gr.Image
    gate_legend: gr.Image
    diverging: gr.Image
    diverging_legend: gr.Image
    activations: gr.Image
    pin_button: gr.Button
    clear_button: gr.Button
    slots: list[gr.Image]
    depth: gr.Plot
    histogram: gr.Plot
    table: gr.Dataframe
    download_button: gr.Button
    files: gr.File
    other_note: gr.Markdown  # gates over 1-D and 3-D inputs: what there is
    other_layer: gr.Dropdown
    other_slice: gr.Slider  # a 3-D gate's depth slice
    other_picture: gr.Image


def user_errors(fn: Callable) -> Callable:
    """For the API: a project error becomes the endpoint's error message; the app keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SGEVizError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper


def page_errors(key: str) -> Callable:
    """For page events: a project error becomes one warning toast and the page stays as it was (an error
    would mark every output of the event with an "Error" badge). ``key`` names a Page component the event
    outputs, left unchanged."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except SGEVizError as exc:
                gr.Warning(str(exc))
                return self._unchanged(key)

        return wrapper

    return decorate


def upload_path(payload: Any) -> tuple[str, str] | None:
    """(server path, display name) of an image input left unprocessed, or None when empty."""
    if payload is None:
        return None
    if isinstance(payload, (str, Path)):
        path, name = str(payload), Path(payload).name
    elif isinstance(payload, dict) and payload.get("path"):
        path, name = str(payload["path"]), str(payload.get("orig_name") or Path(payload["path"]).name)
    else:
        raise SGEVizError("The image did not arrive: upload it again.")
    if not _may_read(path):
        # Same words whatever the path: the answer must not tell whether a server file exists.
        raise SGEVizError("The image did not arrive through an upload: upload the file itself.")
    return path, name


def _may_read(path: str) -> bool:
    """Whether a served request may read this file: only Gradio's upload folder or an offered example.

    Events skip Gradio's own upload check (preprocess=False), so without this a caller could name
    any file on the server, another user's upload included. Handlers called directly from Python
    (no launched app in context) have no remote caller to distrust.
    """
    from gradio.context import LocalContext
    from gradio.utils import get_upload_folder

    blocks = LocalContext.blocks.get(None)
    if blocks is None or not blocks.has_launched:
        return True
    real = Path(path).resolve()
    if real.is_relative_to(Path(get_upload_folder()).resolve()):
        return True
    return real in {p.resolve() for p in example_paths()}


def _label_value(analysis: Analysis) -> dict[str, float]:
    # Some ImageNet names repeat ("crane", "maillot"): the class index keeps them apart.
    names = [p.label for p in analysis.predictions]
    return {(f"{p.label} (#{p.index})" if names.count(p.label) > 1 else p.label): p.probability
            for p in analysis.predictions}


def _pick_layer(analysis: Analysis, wanted: str | None) -> str:
    return wanted if wanted in analysis.layer_names else views.default_layer(analysis)


def _pick_group(analysis: Analysis, layer: str, wanted: Any) -> int:
    lg = analysis.layer(layer)
    group = _as_int(wanted)
    return group if group is not None and 0 <= group < lg.groups else views.most_selective(lg)


def _as_int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _resolve(analysis: Analysis, view: ViewSettings) -> ViewSettings:
    """``view`` on a layer of ``analysis`` (its default when absent) and a group of that layer (its most
    selective when absent or out of range)."""
    layer = _pick_layer(analysis, view.layer)
    return view.at(layer, _pick_group(analysis, layer, view.group))


class Handlers:
    """The Single image tab's event handlers and the ``/analyze`` and ``/models`` endpoints; each event returns
    {component: value}. Only ``show_image`` and ``api_analyze`` run the network."""

    def __init__(self, service: ModelService):
        self.service = service
        self.c = Page()  # filled by single_tab.build_single_tab
        self._failed: dict[tuple[str, str], float] = {}  # (upload path, model) -> when it last failed
        self._failed_lock = threading.Lock()  # handlers run on several worker threads at once

    # --- outputs -----------------------------------------------------------

    def _unchanged(self, key: str) -> dict:
        """Leave the page as it is (an empty dict would read as one output value)."""
        return {getattr(self.c, key): gr.skip()}

    def _focus(self, analysis: Analysis, view: ViewSettings) -> dict:
        """The mosaic, layer mean and focused group's pictures of ``view`` (its layer and group resolved)."""
        c, v = self.c, view
        focus = views.render_focus(analysis, v.layer, v.group, v.cmap, v.alpha, v.scale, v.contrast, v.cells)
        mosaic = views.render_mosaic(analysis, v.layer, v.order, v.cmap, v.alpha, focus=v.group, scale=v.scale,
                                     cells=v.cells)
        # PNG files written fast (io.tempfiles) rather than arrays: Gradio's own PNG encoding of these
        # pictures would cost more than drawing them.
        return {
            c.mosaic: png_path(mosaic),
            c.layer_mean: png_path(views.render_layer_mean(analysis, v.layer, v.cmap, v.alpha, v.scale, v.cells)),
            c.mosaic_legend: png_path(views.mosaic_legend(analysis, v.layer, v.cmap, v.scale)),
            c.overlay: png_path(focus.overlay),
            c.diverging: png_path(focus.diverging),
            c.activations: png_path(focus.activations),
            c.gate_legend: png_path(focus.gate_legend),
            c.diverging_legend: png_path(focus.diverging_legend),
            c.caption: focus.caption,
        }

    def _layer(self, analysis: Analysis, view: ViewSettings, plots: bool = True) -> dict:
        """``_focus`` plus what belongs to the layer: its menu entry, group range, group table and (``plots``)
        histogram."""
        c = self.c
        lg = analysis.layer(view.layer)
        headers, rows = views.group_table(analysis, view.layer)
        import pandas as pd

        out = self._focus(analysis, view)
        out.update({
            c.layer: gr.Dropdown(choices=analysis.layer_names, value=view.layer, info=views.layer_note(analysis)),
            c.group: group_slider(lg.groups, view.group),
            c.histogram: figures.histogram_figure(analysis, view.layer) if plots else gr.skip(),
            c.table: pd.DataFrame(rows, columns=headers),
        })
        return out

    # --- events ------------------------------------------------------------

    def _model_only(self, choice: str) -> dict:
        """A model picked before any image: its card, its group range, where it runs."""
        c = self.c
        loaded = self.service.get(choice)
        return {c.info: f"**{loaded.name}** loaded on **{loaded.device_label}**: give an image.",
                c.domain: views.domain_markdown(self.service.domain(choice), choice), c.ood: "", c.truth: "",
                c.group: group_slider(self.service.groups(choice), 0)}

    @page_errors("caption")
    def run_clicked(self, payload: Any, choice: str, view: ViewSettings, previous: Analysis | None = None,
                    keep_group: bool = False, stats_open: bool = True, progress: gr.Progress = gr.Progress()) -> dict:
        """The Analyse button: says so when there is nothing to analyse, else runs like a new image."""
        if payload is None:
            gr.Warning("Nothing to analyse yet: upload an image or pick an example first.")
            return self._unchanged("caption")
        return self.show_image(payload, choice, view, previous, keep_group, stats_open, progress)

    @page_errors("caption")
    def show_image(self, payload: Any, choice: str, view: ViewSettings, previous: Analysis | None = None,
                   keep_group: bool = False, stats_open: bool = True, progress: gr.Progress = gr.Progress()) -> dict:
        """A new image or model: the one forward pass. Same model as before: the layer stays put (so images
        compare) and so does the group when the user pinned it ("keep"); otherwise the layer's most
        selective group. Another model: its default layer's most selective group. The depth and histogram
        plots are drawn only when ``stats_open`` (their tab draws them when it is opened: ``more_tab``)."""
        source = upload_path(payload)
        c = self.c
        if not self.service.is_loaded(choice):
            progress(0.05, desc=f"Loading {choice}")
            self.service.get(choice)
        if source is None:
            return self._model_only(choice) if previous is None or previous.model_name != choice \
                else self._unchanged("caption")
        path, name = source
        with self._failed_lock:
            failed_recently = self._failed.get((path, choice), 0.0) > time.monotonic() - 10
        if failed_recently:
            # The page re-sends an image it could not display; its warning is already on screen.
            return self._unchanged("caption")
        progress(0.3, desc="Running the network")
        try:
            analysis = self.service.run_analysis(choice, path, name=name)
        except SGEVizError:
            with self._failed_lock:
                self._failed[(path, choice)] = time.monotonic()
                while len(self._failed) > 64:
                    self._failed.pop(next(iter(self._failed)))
            raise
        progress(0.7, desc="Drawing")
        layer, group = view.layer, view.group
        if previous is None or previous.model_name != analysis.model_name:
            layer, group = None, None
        elif not keep_group:
            group = None
        layer = _pick_layer(analysis, layer)
        out = self._layer(analysis, view.at(layer, _pick_group(analysis, layer, group)), plots=stats_open)
        mask_note = " · green outline = the item's mask (example scene)" if analysis.mask is not None else ""
        out.update({
            c.state: analysis,
            # A gates-only model has no class scores: the panel is hidden and the note beside it says why.
            c.predictions: gr.Label(value=_label_value(analysis), visible=bool(analysis.predictions)),
            c.truth: truth_mark(analysis.true_class, analysis.predictions),
            c.info: (f"**{analysis.model_name}** on **{analysis.device}** · "
                     f"{len(analysis.layers)} SGE layers · forward + capture "
                     f"{analysis.seconds * 1000:.0f} ms{mask_note}"),
            c.depth: figures.depth_figure(analysis) if stats_open else gr.skip(),
            c.domain: views.domain_markdown(self.service.domain(choice), choice),
            c.ood: views.ood_markdown(analysis),
        })
        if views.needs_card(analysis):
            out[c.card] = gr.Accordion(open=True)  # the note points to the card: show it
        out.update(self._other(analysis, None, None, view.cmap))
        return out

    def _other(self, analysis: Analysis, layer: str | None, depth: Any, cmap: str) -> dict:
        """The "1-D / 3-D gates" tab: its note, module menu, slice control (3-D only) and picture."""
        c = self.c
        other = analysis.other_gates
        cmap = cmap if cmap in views.COLORMAPS else views.COLORMAPS[0]
        if not other:
            return {c.other_note: views.OTHER_NONE, c.other_layer: gr.Dropdown(choices=[], value=None),
                    c.other_slice: gr.Slider(visible=False), c.other_picture: None}
        layer = layer if layer in other else next(iter(other))
        gate = other[layer]
        slices = gate.shape[1] if gate.ndim == 4 else 0
        depth = _as_int(depth)
        depth = depth if depth is not None and 0 <= depth < slices else slices // 2
        return {c.other_note: views.other_markdown(analysis),
                c.other_layer: gr.Dropdown(choices=list(other), value=layer),
                c.other_slice: gr.Slider(minimum=0, maximum=max(slices - 1, 1), value=depth, step=1,
                                         visible=bool(slices), label=f"Depth slice (0 to {slices - 1})"),
                c.other_picture: png_path(views.render_other(analysis, layer, depth if slices else None, cmap))}

    @page_errors("other_picture")
    def change_other(self, analysis: Analysis | None, layer: str, depth: Any, cmap: str) -> dict:
        """Another 1-D / 3-D module: its picture and slice control (a 3-D module starts on its middle slice
        when the slice held does not exist in it)."""
        if analysis is None or not analysis.other_gates:
            return self._unchanged("other_picture")
        return self._other(analysis, layer, depth, cmap)

    @page_errors("other_picture")
    def change_slice(self, analysis: Analysis | None, layer: str, depth: Any, cmap: str) -> dict:
        """Another depth slice of the module shown: its picture only."""
        if analysis is None or layer not in analysis.other_gates:
            return self._unchanged("other_picture")
        out = self._other(analysis, layer, depth, cmap)
        return {self.c.other_picture: out[self.c.other_picture]}

    @page_errors("caption")
    def change_layer(self, analysis: Analysis | None, view: ViewSettings, stats_open: bool = True) -> dict:
        """Another layer: its pictures, group range, table and (``stats_open``) histogram (a group it lacks: its
        most selective)."""
        if analysis is None:
            return self._unchanged("caption")
        return self._layer(analysis, _resolve(analysis, view), plots=stats_open)

    def more_tab(self, analysis: Analysis | None, layer: str | None, evt: gr.SelectData) -> dict:
        """A sub-tab under the views was chosen: whether it is Statistics, and if so its two plots for the
        analysis and layer on screen."""
        c = self.c
        opened = evt.value == STATISTICS
        if not opened or analysis is None:
            return {c.stats_open: opened, c.depth: gr.skip(), c.histogram: gr.skip()}
        return {c.stats_open: True, c.depth: figures.depth_figure(analysis),
                c.histogram: figures.histogram_figure(analysis, _pick_layer(analysis, layer))}

    @page_errors("caption")
    def change_view(self, analysis: Analysis | None, view: ViewSettings) -> dict:
        """Group, colour map, opacity, scales, cells or ordering: redraw from the captured gates.

        A group outside the layer's range is refused with a warning naming the range."""
        if analysis is None:
            return self._unchanged("caption")
        lg = analysis.layer(_pick_layer(analysis, view.layer))
        if view.group is not None and not 0 <= view.group < lg.groups:
            views.check_group(lg, view.group)  # raises the message naming the valid groups
        return self._focus(analysis, _resolve(analysis, view))

    @page_errors("group")
    def click_mosaic(self, analysis: Analysis | None, layer: str, order: str, evt: gr.SelectData) -> dict:
        """The group under the clicked mosaic pixel becomes the focused one."""
        if analysis is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            return self._unchanged("group")
        layer = _pick_layer(analysis, layer)
        group = views.clicked_group(analysis, layer, order, int(evt.index[0]), int(evt.index[1]))
        return self._unchanged("group") if group is None else {self.c.group: group}

    @page_errors("group")
    def click_table(self, analysis: Analysis | None, layer: str, evt: gr.SelectData) -> dict:
        """A row of the group table becomes the focused group (column 1 is the group)."""
        if analysis is None or not evt.row_value:
            return self._unchanged("group")
        group = int(evt.row_value[1])
        if not 0 <= group < analysis.layer(_pick_layer(analysis, layer)).groups:
            return self._unchanged("group")
        return {self.c.group: group}

    @page_errors("pins")
    def pin(self, analysis: Analysis | None, view: ViewSettings, pins: list | None) -> dict:
        """The focused view into the next free compare panel; a warning when there is none or no image."""
        pins = list(pins or [])
        # A warning, not an error: an error would blank the four panels already pinned.
        if analysis is None:
            gr.Warning("Nothing to pin yet: give an image first.")
            return self._unchanged("pins")
        if len(pins) >= 4:
            gr.Warning("All four compare panels are in use: press 'Clear compare' first.")
            return self._unchanged("pins")
        v = _resolve(analysis, view)
        pins.append(views.compare_panel(analysis, v.layer, v.group, v.cmap, v.alpha, v.scale, v.cells))
        return self._slots(pins)

    def clear_pins(self) -> dict:
        return self._slots([])

    def _slots(self, pins: list) -> dict:
        out: dict = {self.c.pins: pins}
        for i, slot in enumerate(self.c.slots):
            if i < len(pins):
                out[slot] = gr.Image(value=png_path(pins[i][0]), label=pins[i][1])
            else:
                out[slot] = gr.Image(value=None, label=f"Panel {i + 1}: empty")
        return out

    @page_errors("files")
    def downloads(self, analysis: Analysis | None, view: ViewSettings, pins: list | None) -> dict:
        """The pictures of ``view`` and the pinned panels as PNGs, with gates.npz and stats.json."""
        if analysis is None:
            gr.Warning("Nothing to download yet: give an image first.")
            return self._unchanged("files")
        v = _resolve(analysis, view)
        focus = views.render_focus(analysis, v.layer, v.group, v.cmap, v.alpha, v.scale, v.contrast, v.cells)
        tag = f"{v.layer}_g{v.group}"
        pictures = {
            f"mosaic_{v.layer}": views.render_mosaic(analysis, v.layer, v.order, v.cmap, v.alpha, focus=v.group,
                                                     scale=v.scale, cells=v.cells),
            f"layer_mean_{v.layer}": views.render_layer_mean(analysis, v.layer, v.cmap, v.alpha, v.scale, v.cells),
            f"overlay_{tag}": focus.overlay,
            f"diverging_{tag}": focus.diverging,
            f"activations_{tag}": focus.activations,
        }
        for i, (picture, _caption) in enumerate(pins or []):
            pictures[f"compare_{i + 1}"] = picture
        return {self.c.files: export.write_downloads(analysis, pictures)}

    # --- the API -------------------------------------------------------------

    @user_errors
    def api_analyze(self, image: Any, model: str, layer: str, group: Any, colormap: str, opacity: float):
        source = upload_path(image)
        if source is None:
            raise SGEVizError("No image given: pass one with handle_file(path_or_url).")
        if colormap not in views.COLORMAPS:
            raise SGEVizError(f"Unknown colour map {colormap!r}; use one of {', '.join(views.COLORMAPS)}.")
        if not 0.0 <= float(opacity) <= 1.0:
            raise SGEVizError(f"Opacity {opacity} is outside 0..1.")
        analysis = self.service.run_analysis(model or self.service.default, source[0], name=source[1])
        if layer and layer not in analysis.layer_names:
            raise SGEVizError(f"Layer {layer!r} is not in {analysis.model_name}; its SGE layers are "
                              f"{', '.join(analysis.layer_names)}.")
        layer = layer or analysis.layer_names[-1]
        lg = analysis.layer(layer)
        group = int(group) if group is not None else -1
        group = views.most_selective(lg) if group < 0 else views.check_group(lg, group)
        focus = views.render_focus(analysis, layer, group, colormap, float(opacity))
        mosaic = views.render_mosaic(analysis, layer, Order.SELECTIVE, colormap, float(opacity), focus=group)
        # PNG files written fast (io.tempfiles): Gradio's own PNG encoding of these four arrays costs more
        # than the forward pass.
        pictures = [png_path(p) for p in (mosaic, focus.overlay, focus.diverging, focus.activations)]
        gates = download_folder() / "gates.npz"  # every layer's raw gates: exactly what the pictures draw
        gates.write_bytes(export.npz_bytes(analysis))
        return (_label_value(analysis), views.analysis_stats(analysis), *pictures, str(gates))

    def api_models(self) -> dict:
        """The choices, the default, the device, and per model what it knows (``ModelConfig.domain()``)."""
        return {"choices": self.service.choices, "default": self.service.default,
                "device": describe_device(pick_device(self.service.device)),
                "models": {label: self.service.domain(label) for label in self.service.choices}}


def group_slider(groups: int, value: int) -> gr.Slider:
    """The focused-group control for a layer of ``groups`` groups."""
    return gr.Slider(minimum=0, maximum=groups - 1, value=value, step=1,
                     label=f"Focused group (0 to {groups - 1}; or click a tile)")
