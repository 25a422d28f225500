"""The app's named API endpoints, called with gradio_client against a live local server."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import served_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from test_app_rerender import PHOTO, SCENE

from sge_viz import viz as render
from sge_viz.app import views
from sge_viz.app.catalogue import ModelService
from sge_viz.app.views import CORNER_BUTTONS, view_image
from sge_viz.capture.analysis import analyze
from sge_viz.device import describe_device, pick_device
from sge_viz.io.images import open_image
from sge_viz.io.masks import mask_for
from sge_viz.metrics import gates as stats
from sge_viz.models.factory import create_model
from sge_viz.viz.verdict import HEIGHT, mark

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def served():
    """The app on the shipped demo model, served on a free localhost port."""
    service = ModelService(device="cpu")
    with served_app(service) as url:
        yield Client(url, verbose=False), service, SCENE


@pytest.fixture(scope="module")
def library():
    """The same model loaded by the library itself, apart from the app's cache."""
    return create_model(device="cpu")


@pytest.mark.parametrize("image", [SCENE, PHOTO], ids=["scene-with-mask", "photo"])
def test_analyze_endpoint_returns_the_library_result(served, library, image):
    client, service, _ = served
    predictions, got, mosaic, overlay, diverging, activations, gates = client.predict(
        handle_file(str(image)), service.default, "", -1, "inferno", 0.5, api_name="/analyze")

    # The same image through the library directly, in this process; example scenes carry their mask.
    analysis = analyze(library, open_image(image))
    mask = mask_for(image)
    assert (mask is not None) == (image == SCENE)
    expected = stats.analysis_stats(analysis, mask)
    assert got["model"] == expected["model"]
    assert got["image_size"] == expected["image_size"]
    assert [p["index"] for p in got["predictions"]] == [p["index"] for p in expected["predictions"]]
    np.testing.assert_allclose([p["probability"] for p in got["predictions"]],
                               [p["probability"] for p in expected["predictions"]], rtol=1e-6)
    assert list(got["layers"]) == list(expected["layers"]) == analysis.layer_names
    for name, layer in expected["layers"].items():
        for key, value in layer.items():
            np.testing.assert_allclose(got["layers"][name][key], value, rtol=1e-6, atol=1e-7, err_msg=f"{name} {key}")

    # The out-of-domain verdict: the same distance; the photo is flagged, the scene is not.
    assert got["out_of_domain"]["out_of_domain"] == expected["out_of_domain"]["out_of_domain"] == (image == PHOTO)
    np.testing.assert_allclose(got["out_of_domain"]["value"], expected["out_of_domain"]["value"], rtol=1e-4)

    # The Label output carries the same top-5.
    assert [c["label"] for c in predictions["confidences"]] == [p["label"] for p in expected["predictions"]]

    # Pictures: the deepest layer's most selective group, drawn by the renderer.
    deepest = analysis.layers[-1]
    group = stats.selectivity_order(deepest.gate)[0]
    stretch = dict(vmin=float(deepest.gate.min()), vmax=float(deepest.gate.max()))  # the layer's own range
    want = render.overlay(view_image(analysis), deepest.gate[group], "inferno", 0.5, **stretch)
    # The enhanced/suppressed map on the absolute scale: gate minus the group's mean on -0.25..+0.25.
    want_diverging = render.diverging(view_image(analysis), deepest.gate[group], limit=views.DIVERGING_RANGE)
    if mask is not None:  # the item's outline drawn over both maps
        side = want.shape[0]
        big = np.asarray(Image.fromarray(mask).resize((side, side), Image.NEAREST))
        want, want_diverging = render.draw_outline(want, big), render.draw_outline(want_diverging, big)
    # Each picture carries the image's out-of-domain verdict as a strip on top.
    np.testing.assert_array_equal(np.asarray(Image.open(overlay).convert("RGB")), mark(want, analysis.ood, reserve=CORNER_BUTTONS))
    np.testing.assert_array_equal(np.asarray(Image.open(diverging).convert("RGB")), mark(want_diverging, analysis.ood, reserve=CORNER_BUTTONS))
    want_mosaic = render.mosaic(view_image(analysis), deepest.gate, order=stats.selectivity_order(deepest.gate),
                                cmap="inferno", alpha=0.5, highlight=group, **stretch)
    np.testing.assert_array_equal(np.asarray(Image.open(mosaic).convert("RGB")), mark(want_mosaic, analysis.ood, reserve=CORNER_BUTTONS))
    # Before/after: the group's vector lengths on one scale, the colour bar under the pair.
    before, after = deepest.before_length[group], deepest.after_length[group]
    lo, hi = render.activation_range(before, after)
    want_pair = render.activation_pair(view_image(analysis), before, after, vmin=lo, vmax=hi)
    got_pair = np.asarray(Image.open(activations).convert("RGB"))[HEIGHT:]
    np.testing.assert_array_equal(got_pair[:want_pair.shape[0], :want_pair.shape[1]], want_pair)
    # The raw gates behind the pictures: every layer's (G, h, w) float32 array, as the library computes it.
    with np.load(gates) as npz:
        assert sorted(npz.files) == sorted(analysis.layer_names)
        for layer in analysis.layers:
            assert npz[layer.name].dtype == np.float32
            np.testing.assert_allclose(npz[layer.name], layer.gate, atol=1e-6)


def test_analyze_endpoint_layer_and_group(served, library):
    client, service, _ = served
    analysis = analyze(library, open_image(PHOTO))
    layer = analysis.layer_names[1]
    _, _, _, overlay, _, _, _ = client.predict(handle_file(str(PHOTO)), service.default, layer, 5, "viridis", 0.7,
                                            api_name="/analyze")
    gate = analysis.layer(layer).gate
    stretch = dict(vmin=float(gate.min()), vmax=float(gate.max()))
    want = render.overlay(view_image(analysis), gate[5], "viridis", 0.7, **stretch)
    np.testing.assert_array_equal(np.asarray(Image.open(overlay).convert("RGB")), mark(want, analysis.ood, reserve=CORNER_BUTTONS))
    other = render.overlay(view_image(analysis), gate[6], "viridis", 0.7, **stretch)
    assert not np.array_equal(want, other)  # the group really selects the picture


def test_models_endpoint(served):
    client, service, _ = served
    models = client.predict(api_name="/models")
    assert models["choices"] == service.choices
    assert models["default"] == service.default
    assert models["device"] == describe_device(pick_device("cpu"))
    demo = models["models"][service.default]
    assert "randomised Fashion-MNIST scenes" in demo["training_data"] and demo["classes"][0] == "T-shirt/top"
    assert demo["input_size"] == 64 and demo["num_classes"] == 10
    assert demo["ood"]["score"] == "blocks + gates + energy"
    original = models["models"]["sge_resnet_demo (demo, its own generator only)"]  # offered second
    assert models["choices"][1] == "sge_resnet_demo (demo, its own generator only)"
    assert "Cluttered Fashion-MNIST" in original["training_data"] and original["ood"]["score"] == "stages + energy"
    assert demo["ood"]["threshold"] == service.get(service.default).ood.threshold


def test_errors_come_back_as_messages_and_the_app_keeps_serving(served, tmp_path):
    client, service, image = served
    junk = tmp_path / "notes.png"
    junk.write_text("this is not an image")
    with pytest.raises(AppError, match="notes.png"):
        client.predict(handle_file(str(junk)), service.default, "", -1, "inferno", 0.5, api_name="/analyze")
    with pytest.raises(AppError, match="is not in"):
        client.predict(handle_file(str(image)), service.default, "layer9.9.sge", -1, "inferno", 0.5,
                       api_name="/analyze")
    with pytest.raises(AppError, match="does not exist"):
        client.predict(handle_file(str(image)), service.default, "", 10_000, "inferno", 0.5, api_name="/analyze")
    result = client.predict(handle_file(str(image)), service.default, "", -1, "inferno", 0.5, api_name="/analyze")
    assert result[1]["layers"]
