"""The Gradio page: layout and event wiring; the work happens in ``handlers`` and ``views``.

The named endpoints (``/analyze``, ``/models``, ``/explain``) are documented in the README's API section.
"""
from __future__ import annotations

import gradio as gr

from ..device import describe_device, pick_device
from ..errors import SGEVizError
from ..io.limits import current_limits
from . import views
from .catalogue import ModelService
from .evidence_tab import evidence_tab
from .examples import example_paths, is_scene, is_wild_scene
from .handlers import Handlers
from .imageset_tab import build_imageset_tab
from .views import Cells, Contrast, Order, Scale

# Each browser session keeps its Analysis (~11 MB for SGE-ResNet50) for an hour; beyond this many
# sessions the least recently used ones are dropped, which bounds the server's memory.
STATE_SESSIONS = 256
CSS = """
#mosaic img { cursor: crosshair; }
.caption-line { font-size: 0.9em; }
/* Compare panels: the caption (image, layer, group, scale) on its own lines above the picture, whole */
[id^="compare-"] label[data-testid="block-label"] { position: static; white-space: normal; overflow: visible;
  max-width: 100%; height: auto; }
"""


def build_ui(service: ModelService, concurrency: int | None = None, queue_size: int | None = None) -> gr.Blocks:
    """The whole page. Concurrency and queue size default to $SGE_VIZ_CONCURRENCY / $SGE_VIZ_QUEUE_SIZE."""
    limits = current_limits()
    concurrency = concurrency or limits.concurrency
    queue_size = queue_size or limits.queue_size
    h = Handlers(service)
    c = h.c
    scenes = [[str(p)] for p in example_paths() if is_scene(p) and not is_wild_scene(p)]
    wild = [[str(p)] for p in example_paths() if is_wild_scene(p)]
    photos = [[str(p)] for p in example_paths() if not is_scene(p)]
    png = dict(format="png", interactive=False, buttons=["download", "fullscreen"])
    legend = dict(format="png", interactive=False, show_label=False, container=False, buttons=[])
    groups = _initial_groups(service)

    with gr.Blocks(title="SGE attention explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## SGE attention explorer\nWhere does a Spatial Group-wise Enhance network look? Give an "
                    "image, then walk through every SGE layer and every group's gate. The gates mean something "
                    "only for images of the model's own domain: see the card beside the predictions.")
        with gr.Accordion("How to read this: what each picture and number means", open=False,
                          elem_id="how-to-read"):
            gr.Markdown(views.HOW_TO_READ, elem_id="definitions")
        if service.notice:
            gr.Markdown(f"> **Note:** {service.notice}", elem_id="notice")
        c.state = gr.State(None, time_to_live=3600)
        c.pins = gr.State([], time_to_live=3600)

        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                c.image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                      label="Image (upload, drop or paste)", elem_id="input-image", height=280)
                c.model = gr.Dropdown(service.choices, value=service.default, label="Model", elem_id="model",
                                         info=f"Runs on {describe_device(pick_device(service.device))}; "
                                              "loaded models stay cached.")
                c.run = gr.Button("Analyse", variant="primary", elem_id="run")
                c.ood = gr.Markdown("", elem_id="ood-note")
                c.predictions = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="predictions")
                c.domain = gr.Markdown(_initial_domain(service), elem_id="domain-card")
                c.info = gr.Markdown(f"Device: **{describe_device(pick_device(service.device))}**",
                                        elem_id="info")
                if wild:
                    gr.Examples(wild, inputs=[c.image], examples_per_page=12,
                                label="Scenes for the default model (randomised: shop-style, photo backgrounds, "
                                      "clutter; with the item's mask)")
                if scenes:
                    gr.Examples(scenes, inputs=[c.image], examples_per_page=12,
                                label="Scenes of the original generator (Cluttered Fashion-MNIST, with the item's "
                                      "mask): the one kind of picture sge_resnet_demo knows")
                if photos:
                    gr.Examples(photos, inputs=[c.image], examples_per_page=12,
                                label="Photos: need an ImageNet model (sge_resnet50/101); the demo models have never "
                                      "seen a whole photograph and flag them as out of domain")
            with gr.Column(scale=2):
                with gr.Row():
                    c.layer = gr.Dropdown([], label="SGE layer", elem_id="layer", scale=2)
                    c.order = gr.Radio([o.value for o in Order], value=Order.SELECTIVE.value, label="Mosaic order",
                                          elem_id="order", scale=2)
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("**Every group's gate over the image** (click a tile to focus that group)")
                        c.mosaic = gr.Image(elem_id="mosaic", show_label=False, **png)
                    with gr.Column(scale=1, min_width=160):
                        gr.Markdown("**Layer mean**: the gate averaged over all groups")
                        c.layer_mean = gr.Image(elem_id="layer-mean", show_label=False, **png)
                c.mosaic_legend = gr.Image(elem_id="mosaic-legend", **legend)
                with gr.Row():
                    c.group = gr.Slider(0, groups - 1, value=0, step=1, elem_id="group", scale=3,
                                        label=f"Focused group (0 to {groups - 1}; or click a tile)")
                    c.keep_group = gr.Checkbox(False, label="Keep this group for new images", elem_id="keep-group",
                                               scale=1, info="Otherwise a new image starts on its most "
                                                             "selective group.")
                    c.cmap = gr.Dropdown(list(views.COLORMAPS), value=views.COLORMAPS[0], label="Colour map",
                                            elem_id="cmap", scale=1)
                    c.alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heatmap opacity",
                                           elem_id="alpha", scale=2)
                with gr.Row():
                    c.scale = gr.Radio([s.value for s in Scale], value=Scale.LAYER.value, label="Heatmap colour scale",
                                          elem_id="scale", scale=2,
                                          info="Gates often sit in a narrow band; the layer's own range shows it.")
                    c.contrast = gr.Radio([s.value for s in Contrast], value=Contrast.ABSOLUTE.value,
                                          label="Enhanced vs suppressed: colour scale", elem_id="contrast", scale=2,
                                          info=f"Absolute: gate minus the group's mean on ±{views.DIVERGING_RANGE}, so "
                                               "a flat gate looks flat. Relative: each group stretched to its own "
                                               "largest deviation.")
                    c.cells = gr.Radio([s.value for s in Cells], value=Cells.SMOOTH.value, label="Gate cells",
                                       elem_id="cells", scale=2,
                                       info="True cells shows each gate value as one block (e.g. 8x8).")
                c.caption = gr.Markdown("", elem_id="caption", elem_classes=["caption-line"])
                with gr.Row():
                    with gr.Column():
                        gr.Markdown("**The group's gate over the image**")
                        c.overlay = gr.Image(elem_id="overlay", show_label=False, **png)
                        c.gate_legend = gr.Image(elem_id="gate-legend", **legend)
                    with gr.Column():
                        gr.Markdown("**Enhanced (red) vs suppressed (blue)**: gate minus the group's mean gate "
                                    "(a gate is at most 1: red = attenuated less than average)")
                        c.diverging = gr.Image(elem_id="diverging", show_label=False, **png)
                        c.diverging_legend = gr.Image(elem_id="diverging-legend", **legend)
                gr.Markdown("**Before vs after SGE**: the group's feature-vector length ||x_g(p)|| over its "
                            "channels at each position (one colour scale for both; after = before x gate)")
                c.activations = gr.Image(elem_id="activations", show_label=False, **png)

        with gr.Tab("Compare"):
            gr.Markdown("Pin the focused view (image, layer, group) into the next free panel: e.g. one group "
                        "across layers, several groups of one layer, or one group on two images.")
            with gr.Row():
                pin_btn = gr.Button("Add current view to compare", elem_id="pin")
                clear_btn = gr.Button("Clear compare", elem_id="clear-pins")
            with gr.Row():
                # No corner buttons over the pictures (they would hide the verdict strip; Download has them).
                c.slots = [gr.Image(label=f"Panel {i + 1}: empty", format="png", interactive=False, buttons=[],
                                    elem_id=f"compare-{i + 1}") for i in range(4)]
        with gr.Tab("Statistics"):
            c.depth = gr.Plot(label="Gate statistics across depth", elem_id="depth", format="png")
            c.histogram = gr.Plot(label="This layer's gate values", elem_id="histogram", format="png")
            # The whole width: every column and its header readable without scrolling.
            c.table = gr.Dataframe(label="Groups ranked by selectivity (click a row to focus it)",
                                   interactive=False, elem_id="group-table", max_height=420, wrap=True)
            gr.Markdown(views.definitions_markdown(), elem_id="stat-definitions")
        with gr.Tab("Download"):
            gr.Markdown("The pictures on screen as PNGs, plus `gates.npz` (one float32 (groups, h, w) array per "
                        "layer) and `stats.json`, the same files the command line writes.")
            dl_btn = gr.Button("Prepare downloads", elem_id="prepare-downloads")
            c.files = gr.File(file_count="multiple", label="Files", elem_id="files", interactive=False)
        # Class evidence (Grad-CAM, contributions, ablations) and /explain: its own module.
        evidence_tab(service, image=c.image, model=c.model, layer=c.layer, group=c.group)
        build_imageset_tab(service)  # the "Image set" tab and /dissect

        # API-only components: the documented endpoints take and return plain values.
        with gr.Column(visible=False):
            api_in = [gr.Image(type="filepath", image_mode=None, label="image"),
                      gr.Textbox(value=service.default, label="model"), gr.Textbox(value="", label="layer"),
                      gr.Number(value=-1, precision=0, label="group"),
                      gr.Textbox(value=views.COLORMAPS[0], label="colormap"), gr.Number(value=0.5, label="opacity")]
            api_out = [gr.Label(num_top_classes=5), gr.JSON(), gr.Image(format="png"), gr.Image(format="png"),
                       gr.Image(format="png"), gr.Image(format="png")]
            api_btn = gr.Button()
            models_btn = gr.Button()
            models_out = gr.JSON()

        # --- wiring ----------------------------------------------------------
        view_inputs = [c.state, c.layer, c.group, c.order, c.cmap, c.alpha, c.scale, c.contrast, c.cells]
        focus_outputs = [getattr(c, k) for k in ("mosaic", "layer_mean", "mosaic_legend", "overlay", "diverging",
                                                 "activations", "gate_legend", "diverging_legend", "caption")]
        layer_outputs = focus_outputs + [getattr(c, k) for k in ("layer", "group", "histogram", "table")]
        analyze_outputs = layer_outputs + [getattr(c, k) for k in ("state", "predictions", "info", "depth", "domain",
                                                                   "ood")]
        analyze_inputs = [c.image, c.model, c.layer, c.group, c.order, c.cmap, c.alpha,
                          c.scale, c.state, c.contrast, c.cells, c.keep_group]
        hidden = dict(api_visibility="undocumented")
        # preprocess=False: values arrive as sent, so a group typed out of range reaches the handler (which
        # says what is valid) instead of failing in Gradio's own range check with a server traceback.
        raw = dict(preprocess=False, **hidden)
        run = dict(fn=h.show_image, inputs=analyze_inputs, outputs=analyze_outputs, trigger_mode="always_last", **raw)
        c.image.change(**run)
        c.model.input(**run)
        c.run.click(**{**run, "fn": h.run_clicked})
        c.layer.select(h.change_layer, view_inputs, layer_outputs, trigger_mode="always_last", **raw)
        for control in (c.order, c.cmap, c.scale, c.contrast, c.cells):
            control.input(h.change_view, view_inputs, focus_outputs, **raw)
        # Whatever moves the group (slider, tile click, table row, layer change) redraws through .change.
        for slider in (c.group, c.alpha):
            slider.change(h.change_view, view_inputs, focus_outputs, trigger_mode="always_last", **raw)
        c.mosaic.select(h.click_mosaic, [c.state, c.layer, c.order], [c.group], **hidden)
        c.table.select(h.click_table, [c.state, c.layer], [c.group], **hidden)
        pin_outputs = [c.pins] + c.slots
        pin_btn.click(h.pin, [c.state, c.layer, c.group, c.cmap, c.alpha, c.pins, c.scale, c.cells],
                      pin_outputs, **raw)
        clear_btn.click(h.clear_pins, None, pin_outputs, **hidden)
        dl_btn.click(h.downloads, [c.state, c.layer, c.group, c.order, c.cmap, c.alpha, c.scale, c.pins, c.contrast,
                                   c.cells], [c.files], **raw)
        api_btn.click(h.api_analyze, api_in, api_out, api_name="analyze", preprocess=False,
                      api_description="Predictions, stats.json and the pictures of one image.")
        models_btn.click(h.api_models, None, models_out, api_name="models",
                         api_description="The model choices, the default one and the device.")

    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.handlers = h  # for tests: the handlers behind the page
    return demo


def _initial_groups(service: ModelService) -> int:
    """Groups per layer of the default model, so the group control fits it before the first analysis."""
    try:
        return service.groups(service.default)
    except SGEVizError:
        return 64


def _initial_domain(service: ModelService) -> str:
    """The default model's card at first render (read from its file's header, no weights loaded)."""
    try:
        return views.domain_markdown(service.domain(service.default), service.default)
    except SGEVizError as exc:
        return f"The default model's description could not be read: {exc}"


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False):
    """Start serving, with the upload limit of sge_viz.limits."""
    return demo.launch(server_name=host, server_port=port, share=share,
                       max_file_size=current_limits().max_upload_bytes,
                       prevent_thread_lock=prevent_thread_lock, show_error=True, css=CSS,
                       footer_links=["api", "gradio"], state_session_capacity=STATE_SESSIONS)
