"""The app's handlers: one forward per image, every view change redrawn from the captured gates."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from sge_viz import viz as render
from sge_viz.app.catalogue import SCENES_LABEL, ModelService
from sge_viz.app.layout import build_ui
from sge_viz.app.settings import ViewSettings
from sge_viz.app.views import CORNER_BUTTONS, Order, Scale, default_layer, group_table, mosaic_tile, view_image
from sge_viz.capture.preprocess import center_crop_view
from sge_viz.io.masks import mask_for
from sge_viz.metrics import gates as stats
from sge_viz.metrics import localisation as metrics
from sge_viz.models.checkpoint import save_safetensors
from sge_viz.models.config import ModelConfig
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS, build_model
from sge_viz.resources import examples_dir
from sge_viz.viz.verdict import HEIGHT, mark

SCENE = examples_dir() / "scene_01.png"  # an example scene with its item mask
PHOTO = examples_dir() / "chelsea.jpg"  # an example without a mask


def small_checkpoint(folder: Path, resize_size: int = 64) -> Path:
    """A demo-sized SGE-ResNet whose SGE weights are not the flat init, so every group's gate differs."""
    torch.manual_seed(0)
    config = ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=64, resize_size=resize_size,
                         class_names=tuple(f"class{i}" for i in range(10)), arch_kwargs=DEMO_KWARGS)
    model, config = build_model(DEMO_ARCH, config)
    for name, p in model.named_parameters():
        if name.endswith("sge.weight"):
            p.data.normal_(0.0, 1.5)
        elif name.endswith("sge.bias"):
            p.data.normal_(0.0, 1.0)
    return save_safetensors(model, config, folder / "small.safetensors")


@pytest.fixture(scope="module")
def app():
    """The page's handlers over the shipped demo model, with every forward counted."""
    service = ModelService(device="cpu")
    assert service.default == SCENES_LABEL and not service.notice
    demo = build_ui(service)
    loaded = service.get(service.default)
    forwards = []
    handle = loaded.model.register_forward_hook(lambda *_: forwards.append(1))
    yield demo.handlers, service, forwards, SCENE
    handle.remove()


def images_of(out: dict, handlers) -> dict[str, np.ndarray]:
    """The pictures a handler sent to the page (PNG files), as arrays."""
    c = handlers.c
    return {k: np.asarray(Image.open(out[getattr(c, k)]).convert("RGB"))
            for k in ("mosaic", "overlay", "diverging", "activations") if getattr(c, k) in out}


def test_view_changes_never_run_the_model(app):
    h, service, forwards, image = app
    start = len(forwards)
    payload = {"path": str(image), "orig_name": image.name}
    out = h.show_image(payload, service.default, ViewSettings(order=Order.MODEL))
    assert len(forwards) == start + 1
    analysis = out[h.c.state]
    before = images_of(out, h)

    # Another layer: every picture changes, no forward.
    other = analysis.layer_names[1]
    group = 3
    model_order = ViewSettings(layer=other, group=group, order=Order.MODEL)
    out_layer = h.change_layer(analysis, model_order)
    after_layer = images_of(out_layer, h)
    for key in before:
        assert before[key].shape != after_layer[key].shape or not np.array_equal(before[key], after_layer[key]), key
    # The redrawn overlay is exactly the renderer's picture of that layer's gate, item outlined.
    gate = analysis.layer(other).gate[group]
    side = view_image(analysis).shape[0]
    mask = np.asarray(Image.fromarray(mask_for(image)).resize((side, side), Image.NEAREST))
    lg = analysis.layer(other)  # the default colour scale: the layer's own min..max
    stretch = dict(vmin=float(lg.gate.min()), vmax=float(lg.gate.max()))
    want = render.draw_outline(render.overlay(view_image(analysis), gate, "inferno", 0.5, **stretch), mask)
    np.testing.assert_array_equal(after_layer["overlay"], mark(want, analysis.ood, reserve=CORNER_BUTTONS))  # the verdict on top

    # Another group, colour map, opacity, ordering, colour scale: the views change, still no forward.
    seven = replace(model_order, group=7)
    views = [h.change_view(analysis, seven),
             h.change_view(analysis, replace(seven, cmap="viridis")),
             h.change_view(analysis, replace(seven, cmap="viridis", alpha=0.9)),
             h.change_view(analysis, replace(seven, cmap="viridis", alpha=0.9, order=Order.SELECTIVE)),
             h.change_view(analysis, replace(seven, cmap="viridis", alpha=0.9, order=Order.SELECTIVE,
                                             scale=Scale.FULL))]
    pictures = [images_of(v, h) for v in views]
    assert not np.array_equal(pictures[0]["overlay"], after_layer["overlay"])  # group 3 -> 7
    assert not np.array_equal(pictures[0]["activations"], after_layer["activations"])
    assert not np.array_equal(pictures[1]["overlay"], pictures[0]["overlay"])  # colour map
    assert not np.array_equal(pictures[2]["overlay"], pictures[1]["overlay"])  # opacity
    assert not np.array_equal(pictures[3]["mosaic"], pictures[2]["mosaic"])  # ordering
    np.testing.assert_array_equal(pictures[3]["overlay"], pictures[2]["overlay"])  # ordering moves tiles only
    full = render.overlay(view_image(analysis), lg.gate[7], "viridis", 0.9)  # the gate's whole range 0..1
    np.testing.assert_array_equal(pictures[4]["overlay"], mark(render.draw_outline(full, mask), analysis.ood, reserve=CORNER_BUTTONS))
    assert not np.array_equal(pictures[4]["mosaic"], pictures[3]["mosaic"])
    assert len(forwards) == start + 1


def test_clicking_a_tile_focuses_that_group(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, image.name)
    layer = analysis.layer_names[2]
    order = stats.selectivity_order(analysis.layer(layer).gate)
    rows, cols = render.mosaic_grid(len(order))
    tile = mosaic_tile(len(order))
    for position in (0, 5, len(order) - 1):
        r, c = divmod(position, cols)
        x, y = c * (tile + render.GAP) + tile // 2, HEIGHT + r * (tile + render.GAP) + tile // 2  # under the verdict
        evt = gr.SelectData(None, {"index": [x, y], "value": None})
        assert h.click_mosaic(analysis, layer, Order.SELECTIVE, evt) == {h.c.group: order[position]}
        evt = gr.SelectData(None, {"index": [x, y], "value": None})
        assert h.click_mosaic(analysis, layer, Order.MODEL, evt) == {h.c.group: position}
    gap = gr.SelectData(None, {"index": [tile, HEIGHT + 5], "value": None})  # the white line between tiles
    assert h.click_mosaic(analysis, layer, Order.MODEL, gap) == h._unchanged("group")
    strip = gr.SelectData(None, {"index": [tile // 2, HEIGHT - 2], "value": None})  # the verdict strip
    assert h.click_mosaic(analysis, layer, Order.MODEL, strip) == h._unchanged("group")


def test_compare_holds_four_panels_then_says_so(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, image.name)
    pins: list = []
    for i, layer in enumerate(analysis.layer_names[:4]):
        out = h.pin(analysis, ViewSettings(layer=layer, group=i), pins)
        pins = out[h.c.pins]
        assert len(pins) == i + 1
        gate = analysis.layer(layer).gate
        lo, hi = float(gate.min()), float(gate.max())
        assert pins[-1][1] == f"{image.name} · {layer} · group {i} · layer range {lo:.3f}-{hi:.3f}"
        overlay = render.overlay(view_image(analysis), gate[i], "inferno", 0.5, vmin=lo, vmax=hi)
        side = overlay.shape[0]
        panel = pins[-1][0][HEIGHT:]  # under the verdict strip
        assert np.mean(np.any(panel[:side] != overlay, axis=2)) < 0.05  # the overlay, with a thin outline
        # ... and under it the colour bar of that range: dark at the left end, bright at the right end.
        bar = panel[side + 6].astype(int)
        assert bar[1].sum() < 100 and bar[overlay.shape[1] - 2].sum() > 500
    with pytest.warns(UserWarning, match="four compare panels"):
        assert h.pin(analysis, ViewSettings(layer=analysis.layer_names[0], group=0), pins) == h._unchanged("pins")
    assert h.clear_pins()[h.c.pins] == []


def test_downloads_are_the_cli_formats(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, image.name)
    layer = analysis.layer_names[-1]
    view = ViewSettings(layer=layer, group=2, cmap="magma", alpha=0.4)
    out = h.downloads(analysis, view, [])
    files = {Path(p).name: Path(p) for p in out[h.c.files]}
    with np.load(files["gates.npz"]) as npz:
        assert sorted(npz.files) == sorted(analysis.layer_names)
        for lg in analysis.layers:
            np.testing.assert_array_equal(npz[lg.name], lg.gate)
    want = stats.analysis_stats(analysis, mask_for(image))  # the scene's mask: AUCs included
    assert "mask_auc" in want["layers"][layer]
    assert json.loads(files["stats.json"].read_text()) == json.loads(json.dumps(want))
    overlay = np.asarray(Image.open(files[f"overlay_{layer}_g2.png"]))
    shown = images_of(h._focus(analysis, view), h)["overlay"]
    np.testing.assert_array_equal(overlay, shown)
    other = images_of(h._focus(analysis, replace(view, group=3)), h)["overlay"]
    assert not np.array_equal(overlay, other)


def test_user_errors_become_page_messages(app, tmp_path):
    h, service, _, _ = app
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # One warning toast each, and the page stays as it was (no "Error" badge on every output).
    with pytest.warns(UserWarning, match="broken.png"):
        assert h.show_image({"path": str(bad), "orig_name": bad.name}, service.default,
                            ViewSettings()) == h._unchanged("caption")
    with pytest.warns(UserWarning, match="not on offer"):
        assert h.show_image({"path": str(bad), "orig_name": bad.name}, "no such model",
                            ViewSettings()) == h._unchanged("caption")
    # The Analyse button with no image says so.
    with pytest.warns(UserWarning, match="Nothing to analyse yet"):
        assert h.run_clicked(None, service.default, ViewSettings()) == h._unchanged("caption")
    # A group typed out of range: a warning naming the valid groups, the views stay.
    analysis = service.run_analysis(service.default, SCENE, SCENE.name)
    with pytest.warns(UserWarning, match="groups 0 to 7"):
        assert h.change_view(analysis, ViewSettings(layer="layer1.0.sge", group=99)) == h._unchanged("caption")
    # Controls moved before any image: nothing to redraw, nothing fails.
    first = ViewSettings(layer="layer1.0.sge", group=0)
    assert h.change_layer(None, first) == {h.c.caption: gr.skip()}
    assert h.change_view(None, replace(first, cmap="viridis")) == {h.c.caption: gr.skip()}
    with pytest.warns(UserWarning, match="give an image first"):
        assert h.downloads(None, first, []) == h._unchanged("files")


def test_models_load_once_across_threads(app):
    _, service, _, _ = app
    fresh = ModelService(checkpoint=None, random_weights=["sge_resnet18"], device="cpu")
    label = "sge_resnet18 (random weights)"
    assert label in fresh.choices
    got = []
    threads = [threading.Thread(target=lambda: got.append(fresh.get(label))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(m is got[0] for m in got)
    assert fresh.get(label) is got[0]


def test_example_scenes_bring_their_mask(app, tmp_path):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, image.name)
    np.testing.assert_array_equal(analysis.mask, mask_for(image))  # 64x64 in, 64x64 seen
    layer = analysis.layer_names[3]
    headers, rows = group_table(analysis, layer)
    assert headers[-1] == "mask AUC"
    auc = metrics.gate_mask_auc(analysis.layer(layer).gate, mask_for(image))
    assert [r[-1] for r in rows] == [round(float(auc[r[1]]), 3) for r in rows]
    assert service.run_analysis(service.default, PHOTO, PHOTO.name).mask is None

    # A model that resizes before cropping: the mask goes through the same resize and crop.
    other = ModelService(checkpoint=small_checkpoint(tmp_path, resize_size=80), device="cpu")
    seen = other.run_analysis(other.default, image, image.name).mask
    mask_image = Image.fromarray(mask_for(image).astype(np.uint8) * 255)
    want = center_crop_view(mask_image.resize((80, 80), Image.NEAREST), 80, 64) >= 128
    assert seen.shape == (64, 64)
    assert (seen & want).sum() / (seen | want).sum() > 0.9  # bilinear vs nearest differ only on the edge


def test_first_image_starts_on_the_deepest_layer_later_images_keep_the_view(app):
    h, service, forwards, image = app
    payload = {"path": str(image), "orig_name": image.name}
    first = h.show_image(payload, service.default, ViewSettings(layer="layer1.0.sge", group=0))
    analysis = first[h.c.state]
    layer = default_layer(analysis)
    assert layer == analysis.layer_names[-1]  # the deepest SGE layer, where the gates enhance the item
    assert first[h.c.layer].value == layer
    assert f"opens on {layer}, the deepest of the {len(analysis.layers)} SGE layers" in first[h.c.layer].info
    assert first[h.c.group].value == stats.selectivity_order(analysis.layer(layer).gate)[0]
    # The next image on the same model keeps the layer (so images compare) and starts on its own most
    # selective group, unless the user pinned the group ("keep").
    photo = {"path": str(PHOTO), "orig_name": PHOTO.name}
    view = ViewSettings(layer="layer1.1.sge", group=5)
    second = h.show_image(photo, service.default, view, analysis)
    best = stats.selectivity_order(second[h.c.state].layer("layer1.1.sge").gate)[0]
    assert second[h.c.layer].value == "layer1.1.sge" and second[h.c.group].value == best
    assert best != 5  # so the test tells the two rules apart
    kept = h.show_image(photo, service.default, view, analysis, keep_group=True)
    assert kept[h.c.layer].value == "layer1.1.sge" and kept[h.c.group].value == 5
    assert "group **5** of" in kept[h.c.caption] and PHOTO.name in kept[h.c.caption]


def test_without_the_demo_checkpoint_the_app_says_so_and_still_starts(monkeypatch, tmp_path):
    import sge_viz.app.catalogue as catalogue

    missing = tmp_path / "missing.safetensors"
    monkeypatch.setattr(catalogue, "scenes_checkpoint", lambda: missing)
    monkeypatch.setattr(catalogue, "default_checkpoint", lambda: missing)
    # The original demo model is there: the app starts on it and says the default one is missing.
    service = ModelService(device="cpu", checkpoint_dir=tmp_path)
    assert service.choices == [catalogue.DEMO_LABEL] == [service.default]
    assert "missing.safetensors" in service.notice and "untrained" not in service.notice
    # Neither demo model: an untrained network, and the notice says it is untrained.
    monkeypatch.setattr(catalogue, "demo_checkpoint", lambda: tmp_path / "missing_too.safetensors")
    service = ModelService(device="cpu", checkpoint_dir=tmp_path)
    assert service.choices == ["sge_resnet18 (random weights)"] == [service.default]
    assert "missing.safetensors" in service.notice and "untrained" in service.notice
    assert "layer4.1.sge" in service.run_analysis(service.default, PHOTO, PHOTO.name).layer_names


def test_statistics_plots_are_drawn_when_their_tab_is_shown(app):
    """With the Statistics sub-tab closed (how the page opens) a new image and a layer change skip its two plots;
    opening the tab draws them for the analysis and layer on screen, and from then on they follow."""
    h, service, forwards, image = app
    payload = {"path": str(image), "orig_name": image.name}
    closed = h.show_image(payload, service.default, ViewSettings(), None, False, False)
    analysis = closed[h.c.state]
    assert closed[h.c.depth] == gr.skip() and closed[h.c.histogram] == gr.skip()
    layer = analysis.layer_names[1]
    assert h.change_layer(analysis, ViewSettings(layer=layer), False)[h.c.histogram] == gr.skip()
    start = len(forwards)
    opened = h.more_tab(analysis, layer, gr.SelectData(None, {"index": 2, "value": "Statistics"}))
    assert opened[h.c.stats_open] is True and len(forwards) == start
    # The histogram drawn is this layer's: its bars are the counts of every gate value of the layer.
    counts, _ = stats.histogram(analysis.layer(layer).gate)
    bars = [p for p in opened[h.c.histogram].axes[0].patches]
    np.testing.assert_array_equal(bars[0].get_path().vertices[:, 1].max(), counts.max())
    depth_means = opened[h.c.depth].axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(depth_means, [r["mean"] for r in stats.depth_profile(analysis)])
    moved = h.more_tab(analysis, layer, gr.SelectData(None, {"index": 1, "value": "Compare"}))
    assert moved[h.c.stats_open] is False and moved[h.c.depth] == gr.skip()
    shown = h.show_image(payload, service.default, ViewSettings(), analysis, False, True)
    assert shown[h.c.depth] is not None and shown[h.c.depth] != gr.skip()


def test_a_checkpoints_card_is_read_without_building_its_network(monkeypatch):
    """The domain card of a checkpoint on offer, not loaded yet, comes from the file (a skeleton on the meta device
    checks it): the same config the loaded model has, and no network with real weights is built for it."""
    from sge_viz.app.catalogue import DEMO_LABEL
    from sge_viz.models.resnet import SGEResNet

    service = ModelService(device="cpu")
    devices = []
    init = SGEResNet.__init__

    def recording(self, *args, **kwargs):
        devices.append(torch.empty(0).device.type)  # where this network's weights are created
        init(self, *args, **kwargs)

    monkeypatch.setattr(SGEResNet, "__init__", recording)
    card = service.config(DEMO_LABEL)
    assert devices and set(devices) == {"meta"}
    monkeypatch.undo()
    assert not service.is_loaded(DEMO_LABEL)
    assert service.get(DEMO_LABEL).config == card


def test_the_enlarged_view_is_drawn_once_per_analysis_and_forgotten_with_it():
    """``view_image`` enlarges an analysis's crop once (every redraw draws over it) and keeps it only as long as
    the analysis lives: the page's cache is the app's, not a field of the capture's Analysis."""
    import gc

    from sge_viz.app import views
    from sge_viz.capture.analysis import Analysis

    crop = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    first = Analysis(crop, [], [])
    view = view_image(first)
    assert view_image(first) is view and view.shape == (7 * 64, 7 * 48, 3) and not view.flags.writeable
    np.testing.assert_array_equal(view, render.enlarged(crop))
    second = replace(first)  # equal, but another analysis: its own entry
    assert view_image(second) is not view and np.array_equal(view_image(second), view)
    kept = len(views._VIEWS)
    del first, second
    gc.collect()
    assert len(views._VIEWS) == kept - 2
