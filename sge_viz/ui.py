"""The Gradio page: layout and event wiring. All work happens in ``sge_viz.service``.

Named API endpoints (for ``gradio_client``)
-------------------------------------------

Start the app (``python app.py``), then from Python::

    from gradio_client import Client, handle_file

    client = Client("http://127.0.0.1:7860/")
    models = client.predict(api_name="/models")
    predictions, stats, mosaic, overlay, diverging, activations = client.predict(
        handle_file("assets/scene_01.png"),           # image: a path or URL
        models["default"],                             # model: one of models["choices"]
        "",                                            # layer: e.g. "layer3.1.sge"; "" = the deepest
        -1,                                            # group: -1 = the layer's most selective group
        "inferno",                                     # colour map of the heatmaps
        0.5,                                           # opacity of the heatmaps over the image
        api_name="/analyze",
    )

``/models`` -> dict: ``{"choices": [labels], "default": label, "device": "CPU" or "GPU: <name>"}``.

Every argument after the image has a default (the default model, the deepest layer, its most
selective group, inferno, 0.5), so ``client.predict(handle_file(path), api_name="/analyze")`` works.
Colour maps: inferno, viridis, magma, plasma, cividis, turbo, gray.

``/analyze`` -> six values:

- ``predictions``: ``{"label": top-1 label, "confidences": [{"label", "confidence"}, ...]}`` (top 5)
- ``stats``: exactly the CLI's ``stats.json`` for that image: ``{"model", "image_size", "predictions",
  "layers": {layer: {"groups", "height", "width", "mean", "std", "min", "max", "enhanced_share",
  "selectivity"[, "mask_auc"]}}}`` (``mask_auc`` only for the example scenes that ship a mask)
- ``mosaic``: PNG path, every group's gate of the layer over the image, most selective first
  (heatmap colours span the layer's own min..max gate, as the page does by default)
- ``overlay``: PNG path, the group's gate over the image
- ``diverging``: PNG path, the group's enhanced (red) vs suppressed (blue) map
- ``activations``: PNG path, the group's activation before | after SGE on one colour scale

Errors a caller can cause (unreadable image, unknown model, layer or group) come back as
``gradio_client`` exceptions carrying the same message the page shows.
"""
from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from . import service as svc
from .analysis import Analysis
from .device import describe_device, pick_device
from .errors import SGEVizError
from .limits import current_limits
from .pngcache import png_path

# Each browser session keeps its Analysis (~11 MB for SGE-ResNet50) for an hour; beyond this many
# sessions the least recently used ones are dropped, which bounds the server's memory.
STATE_SESSIONS = 256
CSS = """
#mosaic img { cursor: crosshair; }
.caption-line { font-size: 0.9em; }
"""


def user_errors(fn: Callable) -> Callable:
    """A project error becomes a message in the page; the app keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SGEVizError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper


def _payload_path(payload: Any) -> tuple[str, str] | None:
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
    return real in {p.resolve() for p in svc.example_paths()}


def _label_value(analysis: Analysis) -> dict[str, float]:
    # Some ImageNet names repeat ("crane", "maillot"): the class index keeps them apart.
    names = [p.label for p in analysis.predictions]
    return {(f"{p.label} (#{p.index})" if names.count(p.label) > 1 else p.label): p.probability
            for p in analysis.predictions}


def _pick_layer(analysis: Analysis, wanted: str | None) -> str:
    return wanted if wanted in analysis.layer_names else svc.default_layer(analysis)


def _pick_group(analysis: Analysis, layer: str, wanted: Any) -> int:
    lg = analysis.layer(layer)
    try:
        group = int(wanted)
    except (TypeError, ValueError):
        group = -1
    return group if 0 <= group < lg.groups else svc.most_selective(lg)


class Handlers:
    """Event handlers; each returns {component: value}. Only ``analyze`` runs the network."""

    def __init__(self, service: svc.ModelService):
        self.service = service
        self.c: dict[str, Any] = {}  # components by name, filled by build_ui
        self._failed: dict[tuple[str, str], float] = {}  # (upload path, model) -> when it last failed

    # --- outputs -----------------------------------------------------------

    def _unchanged(self, key: str) -> dict:
        """Leave the page as it is (an empty dict would read as one output value)."""
        return {self.c[key]: gr.skip()}

    def _focus(self, analysis: Analysis, layer: str, group: int, order: str, cmap: str, alpha: float,
               scale: str) -> dict:
        c = self.c
        views = svc.render_focus(analysis, layer, group, cmap, alpha, scale)
        mosaic = svc.render_mosaic(analysis, layer, order, cmap, alpha, focus=group, scale=scale)
        # PNG files written fast (pngcache) rather than arrays: Gradio's own PNG encoding of these
        # pictures would cost more than drawing them.
        return {
            c["mosaic"]: png_path(mosaic),
            c["overlay"]: png_path(views.overlay),
            c["diverging"]: png_path(views.diverging),
            c["activations"]: png_path(views.activations),
            c["gate_legend"]: png_path(views.gate_legend),
            c["diverging_legend"]: png_path(views.diverging_legend),
            c["caption"]: views.caption,
        }

    def _layer(self, analysis: Analysis, layer: str, group: int, order: str, cmap: str, alpha: float,
               scale: str) -> dict:
        c = self.c
        lg = analysis.layer(layer)
        headers, rows = svc.group_table(analysis, layer)
        import pandas as pd

        out = self._focus(analysis, layer, group, order, cmap, alpha, scale)
        out.update({
            c["layer"]: gr.Dropdown(choices=analysis.layer_names, value=layer),
            c["group"]: gr.Slider(minimum=0, maximum=lg.groups - 1, value=group, step=1,
                                  label=f"Focused group (0 to {lg.groups - 1}; or click a tile)"),
            c["histogram"]: svc.histogram_figure(analysis, layer),
            c["table"]: pd.DataFrame(rows, columns=headers),
        })
        return out

    # --- events ------------------------------------------------------------

    @user_errors
    def show_image(self, payload: Any, choice: str, layer: str, group: Any, order: str, cmap: str, alpha: float,
                   scale: str = svc.SCALES[0], previous: Analysis | None = None,
                   progress: gr.Progress = gr.Progress()) -> dict:
        """A new image or model: the one forward pass. Same model as before: the layer and group stay put,
        so images compare; otherwise start on the default layer's most selective group."""
        source = _payload_path(payload)
        c = self.c
        if not self.service.is_loaded(choice):
            progress(0.05, desc=f"Loading {choice}")
            loaded = self.service.get(choice)
            if source is None:  # a model picked before any image: load it now, say where it runs
                return {c["info"]: f"**{loaded.name}** loaded on **{loaded.device_label}**: give an image."}
        if source is None:
            return self._unchanged("caption")
        path, name = source
        if self._failed.get((path, choice), 0.0) > time.monotonic() - 10:
            # The page re-sends an image it could not display; its error is already on screen.
            return self._unchanged("caption")
        progress(0.3, desc="Running the network")
        try:
            analysis = self.service.run_analysis(choice, path, name=name)
        except SGEVizError:
            self._failed[(path, choice)] = time.monotonic()
            while len(self._failed) > 64:
                self._failed.pop(next(iter(self._failed)))
            raise
        progress(0.7, desc="Drawing")
        if previous is None or previous.model_name != analysis.model_name:
            layer, group = None, None
        layer = _pick_layer(analysis, layer)
        group = _pick_group(analysis, layer, group)
        out = self._layer(analysis, layer, group, order, cmap, alpha, scale)
        mask_note = " · outline = the item's mask (example scene)" if "mask" in analysis.extras else ""
        out.update({
            c["state"]: analysis,
            c["predictions"]: _label_value(analysis),
            c["info"]: (f"**{analysis.model_name}** on **{analysis.extras['device']}** · "
                        f"{len(analysis.layers)} SGE layers · forward + capture "
                        f"{analysis.extras['seconds'] * 1000:.0f} ms{mask_note}"),
            c["depth"]: svc.depth_figure(analysis),
        })
        return out

    @user_errors
    def change_layer(self, analysis: Analysis | None, layer: str, group: Any, order: str, cmap: str,
                     alpha: float, scale: str = svc.SCALES[0]) -> dict:
        if analysis is None:
            return self._unchanged("caption")
        layer = _pick_layer(analysis, layer)
        return self._layer(analysis, layer, _pick_group(analysis, layer, group), order, cmap, alpha, scale)

    @user_errors
    def change_view(self, analysis: Analysis | None, layer: str, group: Any, order: str, cmap: str,
                    alpha: float, scale: str = svc.SCALES[0]) -> dict:
        """Group, colour map, opacity, scale or ordering: redraw from the captured gates."""
        if analysis is None:
            return self._unchanged("caption")
        layer = _pick_layer(analysis, layer)
        return self._focus(analysis, layer, _pick_group(analysis, layer, group), order, cmap, alpha, scale)

    @user_errors
    def click_mosaic(self, analysis: Analysis | None, layer: str, order: str, evt: gr.SelectData) -> dict:
        """The group under the clicked mosaic pixel becomes the focused one."""
        if analysis is None or not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:
            return self._unchanged("group")
        layer = _pick_layer(analysis, layer)
        group = svc.clicked_group(analysis, layer, order, int(evt.index[0]), int(evt.index[1]))
        return self._unchanged("group") if group is None else {self.c["group"]: group}

    @user_errors
    def click_table(self, analysis: Analysis | None, layer: str, evt: gr.SelectData) -> dict:
        if analysis is None or not evt.row_value:
            return self._unchanged("group")
        group = int(evt.row_value[1])  # column 1 is the group index
        if not 0 <= group < analysis.layer(_pick_layer(analysis, layer)).groups:
            return self._unchanged("group")
        return {self.c["group"]: group}

    @user_errors
    def pin(self, analysis: Analysis | None, layer: str, group: Any, cmap: str, alpha: float,
            pins: list | None, scale: str = svc.SCALES[0]) -> dict:
        pins = list(pins or [])
        # A warning, not an error: an error would blank the four panels already pinned.
        if analysis is None:
            gr.Warning("Nothing to pin yet: give an image first.")
            return self._unchanged("pins")
        if len(pins) >= 4:
            gr.Warning("All four compare panels are in use: press 'Clear compare' first.")
            return self._unchanged("pins")
        layer = _pick_layer(analysis, layer)
        picture, caption = svc.compare_panel(analysis, layer, _pick_group(analysis, layer, group), cmap, alpha,
                                             scale)
        pins.append((picture, caption))
        return self._slots(pins)

    def clear_pins(self) -> dict:
        return self._slots([])

    def _slots(self, pins: list) -> dict:
        out: dict = {self.c["pins"]: pins}
        for i, slot in enumerate(self.c["slots"]):
            if i < len(pins):
                out[slot] = gr.Image(value=png_path(pins[i][0]), label=pins[i][1])
            else:
                out[slot] = gr.Image(value=None, label=f"Panel {i + 1}: empty")
        return out

    @user_errors
    def downloads(self, analysis: Analysis | None, layer: str, group: Any, order: str, cmap: str,
                  alpha: float, scale: str, pins: list | None) -> dict:
        if analysis is None:
            gr.Warning("Nothing to download yet: give an image first.")
            return self._unchanged("files")
        layer = _pick_layer(analysis, layer)
        group = _pick_group(analysis, layer, group)
        views = svc.render_focus(analysis, layer, group, cmap, alpha, scale)
        tag = f"{layer}_g{group}"
        pictures = {
            f"mosaic_{layer}": svc.render_mosaic(analysis, layer, order, cmap, alpha, focus=group, scale=scale),
            f"overlay_{tag}": views.overlay,
            f"diverging_{tag}": views.diverging,
            f"activations_{tag}": views.activations,
        }
        for i, (picture, _caption) in enumerate(pins or []):
            pictures[f"compare_{i + 1}"] = picture
        return {self.c["files"]: svc.write_downloads(analysis, pictures)}

    # --- the API -------------------------------------------------------------

    @user_errors
    def api_analyze(self, image: Any, model: str, layer: str, group: Any, colormap: str, opacity: float):
        source = _payload_path(image)
        if source is None:
            raise SGEVizError("No image given: pass one with handle_file(path_or_url).")
        if colormap not in svc.COLORMAPS:
            raise SGEVizError(f"Unknown colour map {colormap!r}; use one of {', '.join(svc.COLORMAPS)}.")
        if not 0.0 <= float(opacity) <= 1.0:
            raise SGEVizError(f"Opacity {opacity} is outside 0..1.")
        analysis = self.service.run_analysis(model or self.service.default, source[0], name=source[1])
        if layer and layer not in analysis.layer_names:
            raise SGEVizError(f"Layer {layer!r} is not in {analysis.model_name}; its SGE layers are "
                              f"{', '.join(analysis.layer_names)}.")
        layer = layer or analysis.layer_names[-1]
        lg = analysis.layer(layer)
        group = int(group) if group is not None else -1
        group = svc.most_selective(lg) if group < 0 else svc.check_group(lg, group)
        views = svc.render_focus(analysis, layer, group, colormap, float(opacity))
        mosaic = svc.render_mosaic(analysis, layer, svc.ORDERS[1], colormap, float(opacity), focus=group)
        # PNG files written fast (pngcache): Gradio's own PNG encoding of these four arrays costs more
        # than the forward pass.
        pictures = [png_path(p) for p in (mosaic, views.overlay, views.diverging, views.activations)]
        return (_label_value(analysis), svc.analysis_stats(analysis), *pictures)

    def api_models(self) -> dict:
        return {"choices": self.service.choices, "default": self.service.default,
                "device": describe_device(pick_device(self.service.device))}


def build_ui(service: svc.ModelService, concurrency: int | None = None, queue_size: int | None = None) -> gr.Blocks:
    """The whole page. Concurrency and queue size default to $SGE_VIZ_CONCURRENCY / $SGE_VIZ_QUEUE_SIZE."""
    limits = current_limits()
    concurrency = concurrency or limits.concurrency
    queue_size = queue_size or limits.queue_size
    h = Handlers(service)
    c = h.c
    examples = [[str(p)] for p in svc.example_paths()]
    png = dict(format="png", interactive=False, buttons=["download", "fullscreen"])
    legend = dict(format="png", interactive=False, show_label=False, container=False, buttons=[])

    with gr.Blocks(title="SGE attention explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## SGE attention explorer\nWhere does a Spatial Group-wise Enhance network look? Give an "
                    "image, then walk through every SGE layer and every group's gate.")
        if service.notice:
            gr.Markdown(f"> **Note:** {service.notice}", elem_id="notice")
        c["state"] = gr.State(None, time_to_live=3600)
        c["pins"] = gr.State([], time_to_live=3600)

        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                c["image"] = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                      label="Image (upload, drop or paste)", elem_id="input-image", height=280)
                c["model"] = gr.Dropdown(service.choices, value=service.default, label="Model", elem_id="model",
                                         info=f"Runs on {describe_device(pick_device(service.device))}; "
                                              "loaded models stay cached.")
                c["run"] = gr.Button("Analyse again", variant="primary", elem_id="run")
                if examples:
                    gr.Examples(examples, inputs=[c["image"]], label="Examples (the scenes come with item masks)",
                                examples_per_page=12)
                c["info"] = gr.Markdown(f"Device: **{describe_device(pick_device(service.device))}**",
                                        elem_id="info")
                c["predictions"] = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="predictions")
            with gr.Column(scale=2):
                with gr.Row():
                    c["layer"] = gr.Dropdown([], label="SGE layer", elem_id="layer", scale=2)
                    c["order"] = gr.Radio(list(svc.ORDERS), value=svc.ORDERS[1], label="Mosaic order",
                                          elem_id="order", scale=2)
                gr.Markdown("**Every group's gate over the image** (click a tile to focus that group)")
                c["mosaic"] = gr.Image(elem_id="mosaic", show_label=False, **png)
                with gr.Row():
                    c["group"] = gr.Slider(0, 63, value=0, step=1, label="Focused group", elem_id="group", scale=3)
                    c["cmap"] = gr.Dropdown(list(svc.COLORMAPS), value=svc.COLORMAPS[0], label="Colour map",
                                            elem_id="cmap", scale=1)
                    c["alpha"] = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heatmap opacity",
                                           elem_id="alpha", scale=2)
                    c["scale"] = gr.Radio(list(svc.SCALES), value=svc.SCALES[0], label="Heatmap colour scale",
                                          elem_id="scale", scale=2)
                c["caption"] = gr.Markdown("", elem_id="caption", elem_classes=["caption-line"])
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**The group's gate over the image**")
                        c["overlay"] = gr.Image(elem_id="overlay", show_label=False, **png)
                        c["gate_legend"] = gr.Image(elem_id="gate-legend", **legend)
                    with gr.Column():
                        gr.Markdown("**Enhanced (red) vs suppressed (blue)**, relative to the group's mean gate")
                        c["diverging"] = gr.Image(elem_id="diverging", show_label=False, **png)
                        c["diverging_legend"] = gr.Image(elem_id="diverging-legend", **legend)
                gr.Markdown("**The group's activation before vs after SGE** (summed over its channels, one "
                            "colour scale for both)")
                c["activations"] = gr.Image(elem_id="activations", show_label=False, **png)

        with gr.Tab("Compare"):
            gr.Markdown("Pin the focused view (image, layer, group) into the next free panel: e.g. one group "
                        "across layers, several groups of one layer, or one group on two images.")
            with gr.Row():
                pin_btn = gr.Button("Add current view to compare", elem_id="pin")
                clear_btn = gr.Button("Clear compare", elem_id="clear-pins")
            with gr.Row():
                c["slots"] = [gr.Image(label=f"Panel {i + 1}: empty", format="png", interactive=False,
                                       elem_id=f"compare-{i + 1}") for i in range(4)]
        with gr.Tab("Statistics"):
            c["depth"] = gr.Plot(label="Gate statistics across depth", elem_id="depth", format="png")
            with gr.Row():
                c["histogram"] = gr.Plot(label="This layer's gate values", elem_id="histogram", format="png")
                c["table"] = gr.Dataframe(label="Groups ranked by selectivity (click a row to focus it)",
                                          interactive=False, elem_id="group-table", max_height=420)
        with gr.Tab("Download"):
            gr.Markdown("The pictures on screen as PNGs, plus `gates.npz` (one float32 (groups, h, w) array per "
                        "layer) and `stats.json`, the same files the command line writes.")
            dl_btn = gr.Button("Prepare downloads", elem_id="prepare-downloads")
            c["files"] = gr.File(file_count="multiple", label="Files", elem_id="files", interactive=False)

        # API-only components: the documented endpoints take and return plain values.
        with gr.Column(visible=False):
            api_in = [gr.Image(type="filepath", image_mode=None, label="image"),
                      gr.Textbox(value=service.default, label="model"), gr.Textbox(value="", label="layer"),
                      gr.Number(value=-1, precision=0, label="group"),
                      gr.Textbox(value=svc.COLORMAPS[0], label="colormap"), gr.Number(value=0.5, label="opacity")]
            api_out = [gr.Label(num_top_classes=5), gr.JSON(), gr.Image(format="png"), gr.Image(format="png"),
                       gr.Image(format="png"), gr.Image(format="png")]
            api_btn = gr.Button()
            models_btn = gr.Button()
            models_out = gr.JSON()

        # --- wiring ----------------------------------------------------------
        view_inputs = [c["state"], c["layer"], c["group"], c["order"], c["cmap"], c["alpha"], c["scale"]]
        focus_outputs = [c[k] for k in ("mosaic", "overlay", "diverging", "activations", "gate_legend",
                                        "diverging_legend", "caption")]
        layer_outputs = focus_outputs + [c[k] for k in ("layer", "group", "histogram", "table")]
        analyze_outputs = layer_outputs + [c[k] for k in ("state", "predictions", "info", "depth")]
        analyze_inputs = [c["image"], c["model"], c["layer"], c["group"], c["order"], c["cmap"], c["alpha"],
                          c["scale"], c["state"]]
        hidden = dict(api_visibility="undocumented")
        run = dict(fn=h.show_image, inputs=analyze_inputs, outputs=analyze_outputs, preprocess=False,
                   trigger_mode="always_last", **hidden)
        c["image"].change(**run)
        c["model"].input(**run)
        c["run"].click(**run)
        c["layer"].select(h.change_layer, view_inputs, layer_outputs, trigger_mode="always_last", **hidden)
        for control in (c["order"], c["cmap"], c["scale"]):
            control.input(h.change_view, view_inputs, focus_outputs, **hidden)
        # Whatever moves the group (slider, tile click, table row, layer change) redraws through .change.
        for slider in (c["group"], c["alpha"]):
            slider.change(h.change_view, view_inputs, focus_outputs, trigger_mode="always_last", **hidden)
        c["mosaic"].select(h.click_mosaic, [c["state"], c["layer"], c["order"]], [c["group"]], **hidden)
        c["table"].select(h.click_table, [c["state"], c["layer"]], [c["group"]], **hidden)
        pin_outputs = [c["pins"]] + c["slots"]
        pin_btn.click(h.pin, [c["state"], c["layer"], c["group"], c["cmap"], c["alpha"], c["pins"], c["scale"]],
                      pin_outputs, **hidden)
        clear_btn.click(h.clear_pins, None, pin_outputs, **hidden)
        dl_btn.click(h.downloads, view_inputs + [c["pins"]], [c["files"]], **hidden)
        api_btn.click(h.api_analyze, api_in, api_out, api_name="analyze", preprocess=False,
                      api_description="Predictions, stats.json and the pictures of one image.")
        models_btn.click(h.api_models, None, models_out, api_name="models",
                         api_description="The model choices, the default one and the device.")

    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.handlers = h  # for tests: the handlers behind the page
    return demo


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False):
    """Start serving, with the upload limit of sge_viz.limits."""
    return demo.launch(server_name=host, server_port=port, share=share,
                       max_file_size=current_limits().max_upload_bytes,
                       prevent_thread_lock=prevent_thread_lock, show_error=True, css=CSS,
                       footer_links=["api", "gradio"], state_session_capacity=STATE_SESSIONS)
