"""The app's handlers: one forward per image, every view change redrawn from the captured gates."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from sge_viz import render, stats
from sge_viz.checkpoints import save_safetensors
from sge_viz.config import ModelConfig
from sge_viz.models import DEMO_ARCH, DEMO_KWARGS, build_model
from sge_viz.service import ORDERS, TILE, ModelService, view_image
from sge_viz.ui import build_ui


def small_checkpoint(folder: Path) -> Path:
    """A demo-sized SGE-ResNet whose SGE weights are not the flat init, so every group's gate differs."""
    torch.manual_seed(0)
    config = ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=64, resize_size=64,
                         class_names=tuple(f"class{i}" for i in range(10)), arch_kwargs=DEMO_KWARGS)
    model, config = build_model(DEMO_ARCH, config)
    for name, p in model.named_parameters():
        if name.endswith("sge.weight"):
            p.data.normal_(0.0, 1.5)
        elif name.endswith("sge.bias"):
            p.data.normal_(0.0, 1.0)
    return save_safetensors(model, config, folder / "small.safetensors")


def scene(path: Path) -> Path:
    rng = np.random.default_rng(1)
    pixels = (rng.random((72, 90, 3)) * 255).astype(np.uint8)
    pixels[20:50, 30:60] = (230, 200, 40)  # an object the gates can single out
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    service = ModelService(checkpoint=small_checkpoint(folder), device="cpu")
    demo = build_ui(service)
    loaded = service.get(service.default)
    forwards = []
    handle = loaded.model.register_forward_hook(lambda *_: forwards.append(1))
    yield demo.handlers, service, forwards, scene(folder / "scene.png")
    handle.remove()


def images_of(out: dict, handlers) -> dict[str, np.ndarray]:
    c = handlers.c
    return {k: out[c[k]] for k in ("mosaic", "overlay", "diverging", "activations") if c[k] in out}


def test_view_changes_never_run_the_model(app):
    h, service, forwards, image = app
    start = len(forwards)
    payload = {"path": str(image), "orig_name": image.name}
    out = h.show_image(payload, service.default, None, None, ORDERS[0], "inferno", 0.5)
    assert len(forwards) == start + 1
    analysis = out[h.c["state"]]
    before = images_of(out, h)

    # Another layer: every picture changes, no forward.
    other = analysis.layer_names[1]
    group = 3
    out_layer = h.change_layer(analysis, other, group, ORDERS[0], "inferno", 0.5)
    after_layer = images_of(out_layer, h)
    for key in before:
        assert before[key].shape != after_layer[key].shape or not np.array_equal(before[key], after_layer[key]), key
    # The redrawn overlay is exactly the renderer's picture of that layer's gate.
    gate = analysis.layer(other).gate[group]
    np.testing.assert_array_equal(after_layer["overlay"], render.overlay(view_image(analysis), gate, "inferno", 0.5))

    # Another group, colour map, opacity, ordering: the focused views change, still no forward.
    views = [h.change_view(analysis, other, 7, ORDERS[0], "inferno", 0.5),
             h.change_view(analysis, other, 7, ORDERS[0], "viridis", 0.5),
             h.change_view(analysis, other, 7, ORDERS[0], "viridis", 0.9),
             h.change_view(analysis, other, 7, ORDERS[1], "viridis", 0.9)]
    pictures = [images_of(v, h) for v in views]
    assert not np.array_equal(pictures[0]["overlay"], after_layer["overlay"])  # group 3 -> 7
    assert not np.array_equal(pictures[0]["activations"], after_layer["activations"])
    assert not np.array_equal(pictures[1]["overlay"], pictures[0]["overlay"])  # colour map
    assert not np.array_equal(pictures[2]["overlay"], pictures[1]["overlay"])  # opacity
    assert not np.array_equal(pictures[3]["mosaic"], pictures[2]["mosaic"])  # ordering
    np.testing.assert_array_equal(pictures[3]["overlay"], pictures[2]["overlay"])  # ordering moves tiles only
    assert len(forwards) == start + 1


def test_clicking_a_tile_focuses_that_group(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, "scene.png")
    layer = analysis.layer_names[2]
    order = stats.selectivity_order(analysis.layer(layer).gate)
    rows, cols = render.mosaic_grid(len(order))
    for position in (0, 5, len(order) - 1):
        r, c = divmod(position, cols)
        x, y = c * (TILE + render.GAP) + TILE // 2, r * (TILE + render.GAP) + TILE // 2
        evt = gr.SelectData(None, {"index": [x, y], "value": None})
        assert h.click_mosaic(analysis, layer, ORDERS[1], evt) == {h.c["group"]: order[position]}
        evt = gr.SelectData(None, {"index": [x, y], "value": None})
        assert h.click_mosaic(analysis, layer, ORDERS[0], evt) == {h.c["group"]: position}
    gap = gr.SelectData(None, {"index": [TILE, 5], "value": None})  # the white line between tiles
    assert h.click_mosaic(analysis, layer, ORDERS[0], gap) == h._unchanged("group")


def test_compare_holds_four_panels_then_says_so(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, "scene.png")
    pins: list = []
    for i, layer in enumerate(analysis.layer_names[:4]):
        out = h.pin(analysis, layer, i, "inferno", 0.5, pins)
        pins = out[h.c["pins"]]
        assert len(pins) == i + 1
        assert pins[-1][1] == f"scene.png · {layer} · group {i}"
        gate = analysis.layer(layer).gate[i]
        np.testing.assert_array_equal(pins[-1][0], render.overlay(view_image(analysis), gate, "inferno", 0.5))
    with pytest.warns(UserWarning, match="four compare panels"):
        assert h.pin(analysis, analysis.layer_names[0], 0, "inferno", 0.5, pins) == h._unchanged("pins")
    assert h.clear_pins()[h.c["pins"]] == []


def test_downloads_are_the_cli_formats(app):
    h, service, _, image = app
    analysis = service.run_analysis(service.default, image, "scene.png")
    layer = analysis.layer_names[-1]
    out = h.downloads(analysis, layer, 2, ORDERS[1], "magma", 0.4, [])
    files = {Path(p).name: Path(p) for p in out[h.c["files"]]}
    with np.load(files["gates.npz"]) as npz:
        assert sorted(npz.files) == sorted(analysis.layer_names)
        for lg in analysis.layers:
            np.testing.assert_array_equal(npz[lg.name], lg.gate)
    assert json.loads(files["stats.json"].read_text()) == json.loads(json.dumps(stats.analysis_stats(analysis)))
    overlay = np.asarray(Image.open(files[f"overlay_{layer}_g2.png"]))
    np.testing.assert_array_equal(overlay, render.overlay(view_image(analysis), analysis.layer(layer).gate[2],
                                                          "magma", 0.4))


def test_user_errors_become_page_messages(app, tmp_path):
    h, service, _, _ = app
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(gr.Error, match="broken.png"):
        h.show_image({"path": str(bad), "orig_name": bad.name}, service.default, None, None, ORDERS[0],
                     "inferno", 0.5)
    with pytest.raises(gr.Error, match="not on offer"):
        h.show_image({"path": str(bad), "orig_name": bad.name}, "no such model", None, None, ORDERS[0],
                     "inferno", 0.5)
    # Controls moved before any image: nothing to redraw, nothing fails.
    assert h.change_layer(None, "layer1.0.sge", 0, ORDERS[0], "inferno", 0.5) == {h.c["caption"]: gr.skip()}
    assert h.change_view(None, "layer1.0.sge", 0, ORDERS[0], "viridis", 0.5) == {h.c["caption"]: gr.skip()}
    with pytest.warns(UserWarning, match="give an image first"):
        assert h.downloads(None, "layer1.0.sge", 0, ORDERS[0], "inferno", 0.5, []) == h._unchanged("files")


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
