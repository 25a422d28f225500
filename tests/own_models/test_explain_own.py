"""explain() on networks that are not this project's SGE-ResNets: the general ablation path against the
SGE-ResNet restart path, Grad-CAM on a named layer, and clear refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, structured_image
from PIL import Image

from sge_viz import wrap_model
from sge_viz.errors import SGEVizError
from sge_viz.explain import explain
from sge_viz.explain.ablation import flat_gate_probabilities, flat_gate_probabilities_any
from sge_viz.explain.contributions import SGETaps
from sge_viz.models.loaded import LoadedModel

from . import variants as v


def test_general_ablation_equals_the_sge_resnet_restart():
    model, config = make_tiny_model(2)
    model.requires_grad_(False).eval()
    loaded = LoadedModel(model, config, "tiny", "test", torch.device("cpu"))
    evidence = explain(loaded, structured_image(seed=4))  # the restart path
    from sge_viz.capture.preprocess import normalise

    x = normalise(evidence.image, config).unsqueeze(0)
    with torch.enable_grad(), SGETaps(model, keep=True) as taps:
        model(x)
    general = flat_gate_probabilities_any(model, x, taps.layers, taps._modules, evidence.target.index)
    restart = flat_gate_probabilities(model, taps.layers, evidence.target.index)
    assert general.keys() == restart.keys() == evidence.ablation.keys() and len(general) >= 3
    for name in general:
        assert abs(general[name] - restart[name]) <= 1e-5 and abs(general[name] - evidence.ablation[name]) <= 1e-5


def test_explain_on_a_plain_conv_net_with_a_named_cam_layer():
    torch.manual_seed(0)
    model = v.ConvNet(v.FunctionalSGE)
    loaded = wrap_model(model, input_size=32, cam_layer="block2")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    model.block2[2].gates.clear()
    evidence = explain(loaded, image)
    assert evidence.cam_layer == "block2" and evidence.cam.shape == (32, 32)
    assert evidence.layers == ["block1.2", "block2.2"]
    assert evidence.gates["block2.2"].shape == (4, 16, 16)
    # the gates are the module's own sigmoid output of the Grad-CAM forward (the first call; the ablations follow)
    assert np.abs(evidence.gates["block2.2"] - model.block2[2].gates[0][0].numpy()).max() <= 1e-5
    # flattening a layer's gate by hand gives the ablation's probability
    from sge_viz.capture.preprocess import normalise

    x = normalise(evidence.image, loaded.config).unsqueeze(0)
    sge = model.block1[2]
    mean_gate = torch.from_numpy(evidence.gates["block1.2"]).mean((1, 2))
    handle = sge.register_forward_hook(lambda _m, i, _o: (i[0].reshape(1, 4, 4, 32, 32)
                                                          * mean_gate.view(1, 4, 1, 1, 1)).reshape(1, 16, 32, 32))
    with torch.no_grad():
        p = model.eval()(x).softmax(1)[0, evidence.target.index].item()
    handle.remove()
    assert abs(p - evidence.ablation["block1.2"]) <= 1e-5
    assert all(c.shape == (4,) for c in evidence.contributions.values())


def test_explain_refuses_what_it_cannot_do():
    torch.manual_seed(0)
    no_stages = wrap_model(v.ConvNet(v.BlogSGE), input_size=32)
    with pytest.raises(SGEVizError, match="--cam-layer"):
        explain(no_stages, Image.new("RGB", (32, 32)))
    with pytest.raises(SGEVizError, match="not a module"):
        explain(wrap_model(v.ConvNet(v.BlogSGE), input_size=32, cam_layer="nope"), Image.new("RGB", (32, 32)))

    class Dense(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), v.BlogSGE(4))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(SGEVizError, match="needs a class score"):
        explain(wrap_model(Dense(), input_size=32), Image.new("RGB", (32, 32)))


def test_class_evidence_pictures_of_a_wide_input_keep_its_aspect():
    """A model fed 32x64 crops: the CAM, gate and mosaic pictures draw over the crop enlarged by one whole factor
    on both sides (320x640), never squeezed into a square."""
    from sge_viz.explain.pictures import cam_picture, gate_picture

    torch.manual_seed(0)
    loaded = wrap_model(v.ConvNet(v.FunctionalSGE), input_size="32x64", resize="full", cam_layer="block2")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 120, 3), dtype=np.uint8))
    evidence = explain(loaded, image)
    assert evidence.image.shape == (32, 64, 3)
    for picture in (cam_picture(evidence), gate_picture(evidence, "block2.2", 0)):
        assert picture.shape[1] == 640  # 10 x 64: the shorter side 32 -> 320
    # The signed mosaic's tiles keep the aspect too (wide, short tiles), and each frame sits on its own tile:
    # the top edge of every tile is its group's colour, and the empty cells after the last tile carry none.
    from sge_viz import viz
    from sge_viz.explain.pictures import AGAINST, FOR_CLASS, signed_mosaic

    layer = "block2.2"
    order, tile = evidence.ranked(layer), 96
    picture = signed_mosaic(evidence, layer, tile=tile)
    rows, cols = viz.mosaic_grid(len(order))
    tile_h, tile_w = viz.tile_shape(tile, (320, 640))
    assert (tile_h, tile_w) == (48, 96)
    frames = {FOR_CLASS, AGAINST}
    top = next(y for y in range(picture.shape[0]) if tuple(picture[y, tile_w // 2]) in frames)
    for position in range(rows * cols):
        r, c = divmod(position, cols)
        edge = tuple(picture[top + r * (tile_h + viz.GAP), c * (tile_w + viz.GAP) + tile_w // 2])
        if position < len(order):
            assert edge == (FOR_CLASS if evidence.contributions[layer][order[position]] > 0 else AGAINST), position
        else:
            assert edge not in frames, position
