"""The "Class evidence" tab's handlers and the /explain endpoint (gradio_client against a served app)."""
from __future__ import annotations

import os

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from conftest import served_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from test_app_rerender import PHOTO, SCENE

from sge_viz.app.catalogue import ModelService
from sge_viz.app.evidence_tab import TOP1, build_evidence_tab, wire_evidence_tab
from sge_viz.explain import explain
from sge_viz.explain.pictures import cam_picture
from sge_viz.io.images import open_image
from sge_viz.models.factory import create_model

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def library():
    return create_model(device="cpu")


@pytest.fixture(scope="module")
def served():
    service = ModelService(device="cpu")
    with served_app(service) as url:
        yield Client(url, verbose=False), service


def close_json(got, want, path="doc"):
    if isinstance(want, dict):
        assert list(got) == list(want), path
        for key in want:
            close_json(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), path
        for i, (a, b) in enumerate(zip(got, want)):
            close_json(a, b, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), path
    else:
        assert got == want, path


@pytest.mark.parametrize("image, target", [(SCENE, ""), (PHOTO, "Bag")], ids=["scene-top1", "photo-by-name"])
def test_explain_endpoint_returns_the_librarys_evidence(served, library, image, target):
    client, service = served
    doc, picture = client.predict(handle_file(str(image)), service.default, target, api_name="/explain")
    want = explain(library, open_image(image), target or None)
    close_json(doc, want.to_json())
    assert set(doc) == {"target", "cam", "out_of_domain", "layers"} and doc["cam"]["method"] == "gradcam"
    if target:
        assert doc["target"]["label"] == target
    np.testing.assert_array_equal(np.asarray(Image.open(picture).convert("RGB")), cam_picture(want))


def test_explain_endpoint_errors_carry_the_message(served):
    client, service = served
    with pytest.raises(AppError, match="does not exist"):
        client.predict(handle_file(str(SCENE)), service.default, "12", api_name="/explain")
    with pytest.raises(AppError, match="Unknown target class"):
        client.predict(handle_file(str(SCENE)), service.default, "a unicorn", api_name="/explain")
    with pytest.raises(AppError, match="not on offer"):
        client.predict(handle_file(str(SCENE)), "no such model", "", api_name="/explain")


def built_tab() -> tuple[ModelService, object]:
    """A fresh service and the tab, built and wired inside a page with the Single image tab's four controls."""
    service = ModelService(device="cpu")
    with gr.Blocks():
        page = dict(image=gr.Image(type="filepath"), model=gr.Dropdown(service.choices, value=service.default),
                    layer=gr.Dropdown([]), group=gr.Slider(0, 63))
        tab = build_evidence_tab(service)
        wire_evidence_tab(tab, **page)
    return service, tab


def test_the_tab_draws_what_explain_computes(library):
    service, tab = built_tab()
    want = explain(library, open_image(SCENE))
    layer = "layer2.1.sge"
    out = tab.run(str(SCENE), service.default, TOP1, layer, -1, None)
    kept = out[tab.state]
    assert out[tab.opened] is True
    assert kept.evidence.target == want.target
    # Target picker: the top-1 entry, then every class of the model by index and name.
    assert out[tab.target].choices[0] == (TOP1, TOP1) and len(out[tab.target].choices) == 11
    # The ablation sentence with the two probabilities; the ranking table with contributions and correlations.
    a, b = want.target.probability, want.ablation[layer]
    assert f"goes from {a:.3f} to {b:.3f}" in out[tab.sentence]
    table: pd.DataFrame = out[tab.table]
    assert list(table["group"]) == want.ranked(layer)
    np.testing.assert_allclose(table["contribution (logit)"], np.round(want.contributions[layer][want.ranked(layer)], 4))
    np.testing.assert_allclose(table["gate vs CAM r"], np.round(want.cam_correlation(layer)[want.ranked(layer)], 3))
    # No group given: the top contributor is focused.
    assert f"group **{want.ranked(layer)[0]}**" in out[tab.summary]
    for key in (tab.cam, tab.gate, tab.mosaic):  # 64x64 crops enlarged; 8 tiles of 96 px
        assert Image.open(out[key]).size[0] >= 290
    # Same request again: the kept evidence is reused (no second run); a layer change redraws from it.
    again = tab.run(str(SCENE), service.default, TOP1, layer, 3, kept)
    assert again[tab.state] is kept and "group **3**" in again[tab.summary]
    redrawn = tab.redraw(kept, "layer3.1.sge", 5)
    assert "layer3.1.sge" in redrawn[tab.sentence] and f"{want.ablation['layer3.1.sge']:.3f}" in redrawn[tab.sentence]
    # Another target: explained again for that class.
    other = tab.run(str(SCENE), service.default, "8: Bag", layer, 0, kept)
    assert other[tab.state] is not kept and other[tab.state].evidence.target.index == 8
    # Before the tab is opened an image change costs nothing.
    assert tab.follow(str(PHOTO), service.default, TOP1, layer, 0, None, False) == {tab.summary: gr.skip()}
    assert tab.follow(str(PHOTO), service.default, TOP1, layer, 0, kept, True)[tab.state].key[0] == str(PHOTO)
    # The image removed on the page: the kept evidence and its pictures go, the sentence says to give one.
    gone = tab.follow(None, service.default, TOP1, layer, 0, kept, True)
    assert gone[tab.state] is None and gone[tab.cam] is None and gone[tab.table] is None
    assert "No image yet" in gone[tab.summary]


def test_the_tab_measures_faithfulness_and_runs_the_sanity_check(library, tmp_path, monkeypatch):
    from sge_viz.app.catalogue import cropped_example_mask
    from sge_viz.explain.faithfulness import Removal, evidence_faithfulness, example_band

    monkeypatch.setenv("SGE_VIZ_CACHE", str(tmp_path))
    service, tab = built_tab()
    with pytest.raises(gr.Error, match="Explain an image first"):
        tab.measure(None, str(SCENE), "layer3.1.sge", 2, "blur", 0.05)
    kept = tab.run(str(SCENE), service.default, TOP1, "layer3.1.sge", 2, None)[tab.state]
    out = tab.measure(kept, str(SCENE), "layer3.1.sge", 2, "mean", 0.1)
    removal = Removal("mean", step=0.1)
    want = evidence_faithfulness(library, explain(library, open_image(SCENE)), "layer3.1.sge", 2, removal,
                                 example_band(library, removal), cropped_example_mask(open_image(SCENE), library))
    words = out[tab.faith_words]
    assert words.index("`layer3.1.sge group 2`") < words.index("`Grad-CAM`") < words.index("`mask`")
    for name, c in want.curves.items():
        assert f"`{name}`: gap {c.gap:+.3f}" in words and want.verdicts[name] in words
    assert "the image's mean colour, 10% per step" in words
    assert out[tab.faith_plot] is not None
    with_road = tab.measure(kept, str(SCENE), "layer3.1.sge", 2, "mean", 0.1, True)[tab.faith_words]
    assert with_road.count("ROAD most relevant first") == len(want.curves)
    sanity_out = tab.check_sanity(service.default)
    table = sanity_out[tab.sanity_table]
    assert list(table["SGE layer"]) == kept.evidence.layers
    assert "Not class evidence" in sanity_out[tab.sanity_words]
    assert tab.check_sanity(service.default)[tab.sanity_table].equals(table)  # kept per model, not rerun
