"""ViewSettings: the single-image view's controls as one value, and the adapter from the values Gradio sends."""
from __future__ import annotations

import inspect

import gradio as gr
import pytest
from gradio.helpers import special_args

from sge_viz.app.catalogue import ModelService
from sge_viz.app.layout import build_ui
from sge_viz.app.settings import FIELDS, ViewSettings, takes_view, view_settings
from sge_viz.app.views import COLORMAPS, Cells, Contrast, Order, Scale
from sge_viz.errors import SGEVizError


@pytest.fixture(scope="module")
def demo():
    return build_ui(ModelService(device="cpu"))


def test_the_adapter_maps_each_control_to_its_field():
    got = view_settings("layer2.0.sge", "3", "model order", "viridis", "0.7", "gate range 0 to 1",
                        "relative: each group's own largest deviation", "true cells (nearest)")
    assert got == ViewSettings(layer="layer2.0.sge", group=3, order=Order.MODEL, cmap="viridis", alpha=0.7,
                               scale=Scale.FULL, contrast=Contrast.RELATIVE, cells=Cells.NEAREST)
    assert FIELDS == tuple(inspect.signature(view_settings).parameters) == tuple(ViewSettings.__dataclass_fields__)
    # Missing values take the defaults; a group that is no whole number is None (the most selective group).
    assert view_settings() == ViewSettings() == view_settings("", None, "", "", "", "", "", "")
    for group in ("abc", 2.5, "inf", float("nan")):
        assert view_settings(group=group).group is None, group
    assert view_settings(group=-3).group == -3 and view_settings(group=99.0).group == 99  # the handler says why not
    with pytest.raises(SGEVizError, match="Unknown order 'sideways'"):
        view_settings(order="sideways")
    with pytest.raises(SGEVizError, match="Unknown colour map 'jet'"):
        view_settings(cmap="jet")
    with pytest.raises(SGEVizError, match="outside 0..1"):
        view_settings(alpha=1.5)


def test_the_page_sends_the_controls_in_the_order_of_the_fields(demo):
    c = demo.handlers.c
    controls = [getattr(c, name) for name in FIELDS]
    assert [type(x) for x in controls] == [gr.Dropdown, gr.Slider, gr.Radio, gr.Dropdown, gr.Slider, gr.Radio,
                                           gr.Radio, gr.Radio]
    # Their first values make the default settings (the group slider starts at 0).
    assert view_settings(*(x.value for x in controls)) == ViewSettings(group=0, cmap=COLORMAPS[0])
    # Every event that takes the view gets exactly these controls, in this order, after its leading inputs.
    ids = [x._id for x in controls]
    taking = [d for d in demo.config["dependencies"] if ids[0] in d["inputs"] and ids[-1] in d["inputs"]]
    assert len(taking) >= 10  # load, image, model, Analyse, layer, 5 controls, 2 sliders, pin, downloads
    for dep in taking:
        at = dep["inputs"].index(ids[0])
        assert dep["inputs"][at:at + len(ids)] == ids
    assert any(d["targets"] and d["targets"][0][1] == "load" for d in taking)


def test_takes_view_keeps_the_progress_where_gradio_looks(demo):
    h = demo.handlers
    event = takes_view(h.show_image)
    names = list(inspect.signature(event).parameters)
    assert names[:2] == ["payload", "choice"] and names[2:10] == list(FIELDS)
    # image, model, the 8 view controls, state, keep group, Statistics open; then the progress
    inputs, progress_index, _, _ = special_args(event, inputs=list(range(13)))
    assert progress_index == 13 and len(inputs) == 14
    with pytest.raises(gr.Error, match="Unknown colour map"):
        event(None, "m", None, 0, "model order", "jet", 0.5, None, None, None, None, False, False)
