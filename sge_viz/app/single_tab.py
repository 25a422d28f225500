"""The "Single image" tab: one image through one model, every SGE layer's gates over it (``handlers``), and
the named endpoints ``/analyze`` and ``/models``.

``build_single_tab(service, c)`` lays the tab out inside the open ``gr.Tabs`` and fills the ``Page`` ``c``;
``wire_single_tab(h, demo)`` connects its events (the page's load event included: the page opens with the
first example the default model knows already analysed) and registers the endpoints.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..device import describe_device, pick_device
from ..errors import SGEVizError
from ..io.examples import example_paths, is_scene, is_wild_scene, known_examples, misses_caption
from . import views
from .catalogue import ModelService
from .handlers import STATISTICS, Handlers, Page
from .settings import FIELDS, takes_view
from .views import Cells, Contrast, Order, Scale

PNG = dict(format="png", interactive=False, buttons=["download", "fullscreen"])
LEGEND = dict(format="png", interactive=False, show_label=False, container=False, buttons=[])


def build_single_tab(service: ModelService, c: Page) -> gr.Tab:
    """The tab's components, laid out inside an open ``gr.Tabs``; each one is set on ``c``. Returns the tab."""
    device = describe_device(pick_device(service.device))
    groups = _initial_groups(service)
    with gr.Tab("Single image", id="single", elem_id="single-tab") as tab:
        c.state = gr.State(None, time_to_live=3600)
        c.pins = gr.State([], time_to_live=3600)
        c.stats_open = gr.State(False)  # the Statistics sub-tab is shown: only then are its plots drawn
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                _inputs(c, service, device)
            with gr.Column(scale=2):
                _gate_views(c, groups, device)
        _more(c)
    return tab


def _more(c: Page) -> None:
    """The sub-tabs under the views: scales and cells, compare, statistics, 1-D / 3-D gates, download."""
    with gr.Tabs(elem_id="single-more") as c.more:
        with gr.Tab("Scales and cells", elem_id="settings-tab"):
            _settings(c)
        with gr.Tab("Compare", elem_id="compare-tab"):
            gr.Markdown("Pin the focused view (image, layer, group) into the next free panel: e.g. one group "
                        "across layers, several groups of one layer, or one group on two images.")
            with gr.Row():
                c.pin_button = gr.Button("Add current view to compare", elem_id="pin")
                c.clear_button = gr.Button("Clear compare", elem_id="clear-pins")
            with gr.Row():
                # No corner buttons over the pictures (they would hide the verdict strip; Download has them).
                c.slots = [gr.Image(label=f"Panel {i + 1}: empty", format="png", interactive=False, buttons=[],
                                    elem_id=f"compare-{i + 1}") for i in range(4)]
        with gr.Tab(STATISTICS, elem_id="statistics-tab"):
            c.depth = gr.Plot(label="Gate statistics across depth", elem_id="depth", format="png")
            c.histogram = gr.Plot(label="This layer's gate values", elem_id="histogram", format="png")
            # The whole width: every column and its header readable without scrolling.
            c.table = gr.Dataframe(label="Groups ranked by selectivity (click a row to focus it)",
                                   interactive=False, elem_id="group-table", max_height=420, wrap=True)
            gr.Markdown(views.definitions_markdown(), elem_id="stat-definitions")
        with gr.Tab("1-D / 3-D gates", elem_id="other-tab"):
            _other_gates(c)
        with gr.Tab("Download", elem_id="download-tab"):
            gr.Markdown("The pictures on screen as PNGs, plus `gates.npz` (one float32 (groups, h, w) array "
                        "per layer) and `stats.json`, the same files the command line writes.")
            c.download_button = gr.Button("Prepare downloads", elem_id="prepare-downloads")
            c.files = gr.File(file_count="multiple", label="Files", elem_id="files", interactive=False)


def _inputs(c: Page, service: ModelService, device: str) -> None:
    """The left column: the image, the model, Analyse, the predictions and what the model knows, the examples."""
    c.image = gr.Image(first_example(service), type="filepath", image_mode=None,
                       sources=["upload", "clipboard"], label="Image (upload, drop or paste)",
                       elem_id="input-image", height=240)
    c.model = gr.Dropdown(service.choices, value=service.default, label="Model", elem_id="model",
                          info=f"Runs on {device}; loaded models stay cached.")
    c.run = gr.Button("Analyse", variant="primary", elem_id="run")
    c.ood = gr.Markdown("", elem_id="ood-note")
    c.predictions = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="predictions",
                             show_heading=False)
    # An example scene's true class beside the prediction: "true class: Bag ✓" or "... ✗ (model says ...)"
    c.truth = gr.Markdown("", elem_id="true-class")
    with gr.Accordion(views.CARD, open=False, elem_id="domain-accordion") as c.card:
        c.domain = gr.Markdown(_initial_domain(service), elem_id="domain-card")
    _examples(c)


def _gate_views(c: Page, groups: int, device: str) -> None:
    """The right column: layer and order, the mosaic and layer mean, the focused group's three views."""
    with gr.Row():
        c.layer = gr.Dropdown([], label="SGE layer", elem_id="layer", scale=2)
        c.order = gr.Radio([o.value for o in Order], value=Order.SELECTIVE.value, label="Mosaic order",
                           elem_id="order", scale=2)
    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown("**Every group's gate over the image** (click a tile to focus that group)")
            c.mosaic = gr.Image(elem_id="mosaic", show_label=False, **PNG)
        with gr.Column(scale=1, min_width=160):
            gr.Markdown("**Layer mean**: the gate averaged over all groups")
            c.layer_mean = gr.Image(elem_id="layer-mean", show_label=False, **PNG)
    c.mosaic_legend = gr.Image(elem_id="mosaic-legend", **LEGEND)
    with gr.Row():
        c.group = gr.Slider(0, groups - 1, value=0, step=1, elem_id="group", scale=3,
                            label=f"Focused group (0 to {groups - 1}; or click a tile)")
        c.cmap = gr.Dropdown(list(views.COLORMAPS), value=views.COLORMAPS[0], label="Colour map",
                             elem_id="cmap", scale=1)
        c.alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Heatmap opacity", elem_id="alpha",
                            scale=2)
    c.caption = gr.Markdown("", elem_id="caption", elem_classes=["caption-line"])
    with gr.Row():
        with gr.Column(min_width=200):
            gr.Markdown("**The group's gate over the image**")
            c.overlay = gr.Image(elem_id="overlay", show_label=False, **PNG)
            c.gate_legend = gr.Image(elem_id="gate-legend", **LEGEND)
        with gr.Column(min_width=200):
            gr.Markdown("**Enhanced (red) vs suppressed (blue)**: gate minus the group's mean "
                        "(red = attenuated less than average)")
            c.diverging = gr.Image(elem_id="diverging", show_label=False, **PNG)
            c.diverging_legend = gr.Image(elem_id="diverging-legend", **LEGEND)
        with gr.Column(scale=2, min_width=300):
            gr.Markdown("**Before vs after SGE**: the group's feature-vector length ||x_g(p)|| over "
                        "its channels (one colour scale; after = before x gate)")
            c.activations = gr.Image(elem_id="activations", show_label=False, **PNG)
    c.info = gr.Markdown(f"Device: **{device}**", elem_id="info", elem_classes=["caption-line"])


def _examples(c: Page) -> None:
    """The shipped examples, one sub-tab per kind (the default model's scenes first)."""
    paths = example_paths()
    kinds = [
        ("Scenes", [p for p in paths if is_wild_scene(p)],
         "Scenes for the default model (shop-style, photo backgrounds, clutter; with the item's mask)"),
        ("Original scenes", [p for p in paths if is_scene(p) and not is_wild_scene(p)],
         "Scenes of the original generator (Cluttered Fashion-MNIST, with the item's mask): the one kind of "
         "picture sge_resnet_demo knows"),
        ("Photos", [p for p in paths if not is_scene(p)],
         "Photos: need an ImageNet model (sge_resnet50/101); the demo models have never seen a whole photograph "
         "and flag them as out of domain"),
    ]
    kinds = [k for k in kinds if k[1]]
    if not kinds:
        return
    with gr.Tabs(elem_id="examples"):
        for name, found, label in kinds:
            with gr.Tab(name):
                # The scenes the default model gets wrong come last (example_paths) and the label says so.
                wrong = misses_caption(found)
                gr.Examples([[str(p)] for p in found], inputs=[c.image], examples_per_page=12,
                            label=f"{label}; {wrong}" if wrong else label)


def _settings(c: Page) -> None:
    """The secondary view controls: colour scales, cells, and whether a new image keeps the group."""
    with gr.Row():
        c.scale = gr.Radio([s.value for s in Scale], value=Scale.LAYER.value, label="Heatmap colour scale",
                           elem_id="scale", scale=2,
                           info="Gates often sit in a narrow band; the layer's own range shows it.")
        c.contrast = gr.Radio([s.value for s in Contrast], value=Contrast.ABSOLUTE.value,
                              label="Enhanced vs suppressed: colour scale", elem_id="contrast", scale=2,
                              info=f"Absolute: gate minus the group's mean on ±{views.DIVERGING_RANGE}, so a flat "
                                   "gate looks flat. Relative: each group stretched to its own largest deviation.")
        c.cells = gr.Radio([s.value for s in Cells], value=Cells.SMOOTH.value, label="Gate cells", elem_id="cells",
                           scale=2, info="True cells shows each gate value as one block (e.g. 8x8).")
        c.keep_group = gr.Checkbox(False, label="Keep this group for new images", elem_id="keep-group", scale=1,
                                   info="Otherwise a new image starts on its most selective group.")


def _other_gates(c: Page) -> None:
    """Gates of SGE modules over a 1-D sequence or a 3-D volume inside the network: not drawn over the image
    (they have no 2-D map), shown as strips along the sequence or one depth slice at a time."""
    c.other_note = gr.Markdown(views.OTHER_NONE, elem_id="other-note")
    with gr.Row():
        c.other_layer = gr.Dropdown([], label="Module over a 1-D or 3-D input", elem_id="other-layer", scale=2)
        c.other_slice = gr.Slider(0, 1, value=0, step=1, label="Depth slice", elem_id="other-slice", scale=2,
                                  visible=False)
    c.other_picture = gr.Image(elem_id="other-picture", show_label=False, **PNG)


def wire_single_tab(h: Handlers, demo: gr.Blocks) -> None:
    """Connect the tab's events (and the page's load event) to ``h``; register ``/analyze`` and ``/models``."""
    c, service = h.c, h.service
    view = [getattr(c, name) for name in FIELDS]  # the ViewSettings controls, in its order
    focus_outputs = [getattr(c, k) for k in ("mosaic", "layer_mean", "mosaic_legend", "overlay", "diverging",
                                             "activations", "gate_legend", "diverging_legend", "caption")]
    layer_outputs = focus_outputs + [c.layer, c.group, c.histogram, c.table]
    other_outputs = [c.other_note, c.other_layer, c.other_slice, c.other_picture]
    analyze_outputs = (layer_outputs + [c.state, c.predictions, c.truth, c.info, c.depth, c.domain, c.ood, c.card]
                       + other_outputs)
    hidden = dict(api_visibility="undocumented")
    # preprocess=False: values arrive as sent, so a group typed out of range reaches the handler (which
    # says what is valid) instead of failing in Gradio's own range check with a server traceback.
    raw = dict(preprocess=False, **hidden)
    run = dict(fn=takes_view(h.show_image), inputs=[c.image, c.model, *view, c.state, c.keep_group, c.stats_open],
               outputs=analyze_outputs, trigger_mode="always_last", **raw)
    demo.load(**run)  # the image's first value: the page opens with it analysed, per session
    c.image.change(**run)
    c.model.input(**run)
    c.run.click(**{**run, "fn": takes_view(h.run_clicked)})
    redraw = dict(fn=takes_view(h.change_view), inputs=[c.state, *view], outputs=focus_outputs, **raw)
    c.layer.select(**{**redraw, "fn": takes_view(h.change_layer), "inputs": [c.state, *view, c.stats_open],
                      "outputs": layer_outputs}, trigger_mode="always_last")
    # The two plots cost more than the rest of a new image together: drawn when their tab is shown.
    c.more.select(h.more_tab, [c.state, c.layer], [c.stats_open, c.depth, c.histogram], **hidden)
    for control in (c.order, c.cmap, c.scale, c.contrast, c.cells):
        control.input(**redraw)
    # Whatever moves the group (slider, tile click, table row, layer change) redraws through .change.
    for slider in (c.group, c.alpha):
        slider.change(**redraw, trigger_mode="always_last")
    c.other_layer.input(h.change_other, [c.state, c.other_layer, c.other_slice, c.cmap], other_outputs, **raw)
    c.cmap.input(h.change_slice, [c.state, c.other_layer, c.other_slice, c.cmap], [c.other_picture], **raw)
    c.other_slice.change(h.change_slice, [c.state, c.other_layer, c.other_slice, c.cmap], [c.other_picture],
                         trigger_mode="always_last", **raw)
    c.mosaic.select(h.click_mosaic, [c.state, c.layer, c.order], [c.group], **hidden)
    c.table.select(h.click_table, [c.state, c.layer], [c.group], **hidden)
    pin_outputs = [c.pins, *c.slots]
    c.pin_button.click(takes_view(h.pin), [c.state, *view, c.pins], pin_outputs, **raw)
    c.clear_button.click(h.clear_pins, None, pin_outputs, **hidden)
    c.download_button.click(takes_view(h.downloads), [c.state, *view, c.pins], [c.files], **raw)

    # API-only components: the documented endpoints take and return plain values.
    with gr.Column(visible=False):
        api_in = [gr.Image(type="filepath", image_mode=None, label="image"),
                  gr.Textbox(value=service.default, label="model"), gr.Textbox(value="", label="layer"),
                  gr.Number(value=-1, precision=0, label="group"),
                  gr.Textbox(value=views.COLORMAPS[0], label="colormap"), gr.Number(value=0.5, label="opacity")]
        api_out = [gr.Label(num_top_classes=5), gr.JSON(), gr.Image(format="png"), gr.Image(format="png"),
                   gr.Image(format="png"), gr.Image(format="png"), gr.File(label="gates.npz")]
        api_button = gr.Button()
        models_button = gr.Button()
        models_out = gr.JSON()
    api_button.click(h.api_analyze, api_in, api_out, api_name="analyze", preprocess=False,
                     api_description="Predictions, stats.json, the pictures and gates.npz of one image.")
    models_button.click(h.api_models, None, models_out, api_name="models",
                        api_description="The model choices, the default one and the device.")


def first_example(service: ModelService) -> str | None:
    """The picture the page opens on: the first shipped example the default model knows (its config only, no
    weights loaded), else the first example; None when there is none or the model cannot be read."""
    try:
        known = known_examples(service.config(service.default))
    except SGEVizError:
        known = []
    found = known or example_paths()
    return str(Path(found[0])) if found else None


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
