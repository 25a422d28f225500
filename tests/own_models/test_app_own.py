"""Your own model in the app: first in the menu, controls that follow its layers' own group counts, the
card it has (given domain or none known), gates-only models without predictions; serve --model-def."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sge_viz import wrap_model
from sge_viz.app.catalogue import ModelService
from sge_viz.app.layout import build_ui
from sge_viz.app.server import add_serve_args, user_models
from sge_viz.app.settings import ViewSettings

from . import variants as v


class TwoScales(nn.Module):
    """A dense-output net whose SGE layers have 4 and 8 groups, on a non-square input."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), v.FunctionalSGE(4))
        self.b = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), v.BlogSGE(8))

    def forward(self, x):
        return self.b(self.a(x))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    torch.manual_seed(0)
    classifier = wrap_model(v.ConvNet(v.BlogSGE), input_size=48, labels=list("abcde"), name="my classifier",
                            domain="Recognises five letters drawn on paper.")
    dense = wrap_model(TwoScales(), input_size="32x48", resize="full", name="my segmenter")
    service = ModelService(device="cpu", models=[classifier, dense])
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(path)
    return build_ui(service).handlers, service, path


def test_your_models_come_first_and_carry_their_card(page):
    h, service, path = page
    assert service.choices[:2] == ["my classifier", "my segmenter"] and service.default == "my classifier"
    out = h.show_image({"path": str(path), "orig_name": "photo.png"}, "my classifier", ViewSettings())
    assert "five letters" in out[h.c.domain] and "Built by your code" in out[h.c.domain]
    assert out[h.c.predictions].visible is not False and "not available" in out[h.c.ood]


def test_gates_only_model_hides_predictions_and_controls_follow_each_layer(page):
    h, service, path = page
    out = h.show_image({"path": str(path), "orig_name": "photo.png"}, "my segmenter", ViewSettings())
    assert out[h.c.predictions].visible is False and "Gates only" in out[h.c.ood]
    assert "No domain is known" in out[h.c.domain] and "32x48" in out[h.c.domain]
    analysis = out[h.c.state]
    assert analysis.layer_names == ["a.1", "b.1"] and analysis.image.shape == (32, 48, 3)
    for layer, groups in (("a.1", 4), ("b.1", 8)):
        changed = h.change_layer(analysis, ViewSettings(layer=layer, group=0))
        assert changed[h.c.group].maximum == groups - 1
    assert service.groups("my segmenter") == 8  # the deepest layer's, before any image


def test_class_evidence_of_a_model_it_cannot_explain_is_one_sentence(page, caplog):
    import gradio as gr

    from sge_viz.app.evidence_tab import build_evidence_tab

    _, service, path = page
    with gr.Blocks(), gr.Tabs():
        tab = build_evidence_tab(service)
    photo = {"path": str(path), "orig_name": "photo.png"}
    # No ResNet stages and no --cam-layer: what `sge-viz explain` says, as the tab's sentence, pictures cleared.
    with caplog.at_level("INFO", logger="sge_viz.app.evidence_tab"):
        out = tab.run(photo, "my classifier", None, None, None, None)
    assert out[tab.summary].startswith("**No class evidence here.**") and "--cam-layer" in out[tab.summary]
    assert all(out[c] is None for c in (tab.cam, tab.gate, tab.ablation, tab.ranking, tab.mosaic, tab.table))
    assert "--cam-layer" in caplog.text
    out = tab.follow(photo, "my segmenter", None, None, None, None, True)
    assert "No class evidence here" in out[tab.summary] and "class score" in out[tab.summary]


def test_serve_model_def_builds_the_users_model(tmp_path):
    (tmp_path / "defs.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class SGE(nn.Module):\n"
        "    def __init__(self, G=2):\n"
        "        super().__init__(); self.G = G; self.gamma = nn.Parameter(torch.ones(G)); "
        "self.beta = nn.Parameter(torch.zeros(G))\n"
        "    def forward(self, x):\n"
        "        b, c, h, w = x.shape; xg = x.reshape(b, self.G, -1, h, w)\n"
        "        s = (xg * xg.mean((3, 4), keepdim=True)).sum(2)\n"
        "        t = (s - s.mean((2, 3), keepdim=True)) / (s.std((2, 3), keepdim=True) + 1e-5)\n"
        "        a = torch.sigmoid(t * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1))\n"
        "        return (xg * a.unsqueeze(2)).reshape(b, c, h, w)\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), SGE(2))\n")
    args = add_serve_args(argparse.ArgumentParser()).parse_args(
        ["--model-def", f"{tmp_path / 'defs.py'}:build", "--input-size", "24", "--domain", "toy pictures",
         "--device", "cpu"])
    models = user_models(args)
    assert len(models) == 1 and models[0].config.task == "gates" and models[0].config.description == "toy pictures"
    service = ModelService(device="cpu", models=models)
    assert service.choices[0] == models[0].name


def test_gates_over_1d_and_3d_inputs_have_their_own_tab_with_a_slice_control(tmp_path):
    """The strip of a 1-D gate, one depth slice of a 3-D gate at a time; the picture drawn is the gate's slice."""
    from sge_viz.app import views
    from sge_viz.viz.figures import other_gate_figure

    torch.manual_seed(0)
    net = v.MixedDimsNet()
    with torch.no_grad():
        net.vol.weight.normal_(0, 1)
    service = ModelService(device="cpu", models=[wrap_model(net, input_size=12, name="mixed")])
    h = build_ui(service).handlers
    path = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
    out = h.show_image({"path": str(path), "orig_name": "x.png"}, "mixed", ViewSettings())
    analysis = out[h.c.state]
    assert list(analysis.other_gates) == ["seq", "vol"]
    assert "**seq**: 4 groups x 144 positions" in out[h.c.other_note]
    assert "**vol**: 2 groups x 4 x 12 x 12" in out[h.c.other_note]
    assert out[h.c.other_layer].choices == [("seq", "seq"), ("vol", "vol")] and out[h.c.other_slice].visible is False
    strip = np.asarray(Image.open(out[h.c.other_picture]))
    vol = h.change_other(analysis, "vol", None, "inferno")
    assert vol[h.c.other_slice].visible and vol[h.c.other_slice].maximum == 3 and vol[h.c.other_slice].value == 2
    first = np.asarray(Image.open(h.change_slice(analysis, "vol", 0, "inferno")[h.c.other_picture]))
    last = np.asarray(Image.open(h.change_slice(analysis, "vol", 3, "inferno")[h.c.other_picture]))
    assert first.shape == last.shape and not np.array_equal(first, last) and strip.shape != first.shape
    # The slice figure draws exactly gate[g, d] for each group, on the full 0..1 scale.
    gate = analysis.other_gates["vol"]
    fig = other_gate_figure("vol", gate, depth=3)
    shown = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(shown) == 2
    for g, image in enumerate(shown):
        np.testing.assert_array_equal(np.asarray(image.get_array()), gate[g, 3])
        assert image.get_clim() == (0, 1)
    # A module that is not one of them, or a slice that does not exist: a warning, the page unchanged.
    assert h.change_slice(analysis, "block.1", 0, "inferno") == h._unchanged("other_picture")
    with pytest.raises(Exception, match="outside vol's depth 0..3"):
        views.render_other(analysis, "vol", 4, "inferno")
    # A model with none says so in the tab.
    plain = build_ui(ModelService(device="cpu", models=[wrap_model(v.ConvNet(v.BlogSGE), input_size=16,
                                                                          name="plain")])).handlers
    out = plain.show_image({"path": str(path), "orig_name": "x.png"}, "plain", ViewSettings())
    assert out[plain.c.other_note] == views.OTHER_NONE and out[plain.c.other_slice].visible is False
