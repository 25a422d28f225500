"""Every SGE form of the corpus: captured gates equal the module's own sigmoid output (<= 1e-5), modules
that are not gates are named and skipped, the user's model is left exactly as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sge_viz import analyze, wrap_model
from sge_viz.capture.preprocess import center_crop_view
from sge_viz.capture.recorder import GateRecorder
from sge_viz.dissect.reduce import dissect_batch
from sge_viz.errors import SGEVizError
from sge_viz.explain.evidence import explain

from . import variants as v

FORMS = [v.BlogSGE, v.RenamedSigmoidSGE, v.FunctionalSGE, v.SigChildButFunctionalSGE]


def own_gates(model: nn.Module) -> dict[str, list[torch.Tensor]]:
    return {name: m.gates for name, m in model.named_modules() if hasattr(m, "gates")}


def reset(model: nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "gates"):
            m.gates.clear()


@pytest.mark.parametrize("form", FORMS, ids=lambda c: c.__name__)
def test_every_form_is_captured_exactly(form):
    torch.manual_seed(0)
    model = v.ConvNet(form).eval()
    x = torch.randn(2, 3, 20, 28)  # non-square
    outputs = {}
    for name in ("block1.2", "block2.2"):
        model.get_submodule(name).register_forward_hook(lambda _m, _i, out, n=name: outputs.__setitem__(n, out))
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(x)
    own = own_gates(model)
    assert list(rec.captures) == ["block1.2", "block2.2"] and not rec.skipped
    for name, cap in rec.captures.items():
        want = own[name][-1]
        assert cap.gate.shape == want.shape
        assert (cap.gate - want).abs().max() <= 1e-5
        # the 'after' sums (derived from the checked gate) equal the module's real output summed per group
        b, c, h, w = outputs[name].shape
        after = outputs[name].reshape(b, 4, c // 4, h, w).sum(2)
        assert (cap.after - after).abs().max() <= 1e-4 * after.abs().max()
    assert rec.captures["block2.2"].gate.shape == (2, 4, 10, 14)


def test_a_module_that_is_not_a_gate_is_named_and_never_drawn():
    torch.manual_seed(0)
    model = v.ConvNet(v.NotAGate).eval()
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(1, 3, 16, 16))
    assert rec.captures == {}
    assert set(rec.skipped) == {"block1.2", "block2.2"}
    assert all("not a spatial group gate" in why for why in rec.skipped.values())
    with pytest.raises(SGEVizError, match="No SGE gate was captured"):
        wrap_model(model, input_size=16)


def test_a_shared_instance_gives_one_layer_per_call():
    torch.manual_seed(0)
    model = v.SharedSGENet().eval()
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(1, 3, 12, 12))
    assert list(rec.captures) == ["sge", "sge#2"]
    first, second = model.sge.gates[-2:]
    assert (rec.captures["sge"].gate - first).abs().max() <= 1e-5
    assert (rec.captures["sge#2"].gate - second).abs().max() <= 1e-5
    assert (first - second).abs().max() > 1e-3  # two different calls, not one twice


def test_patterns_add_a_module_detection_misses():
    class Anonymous(v.FunctionalSGE):  # no group count attribute under a known name
        def __init__(self):
            super().__init__(4)
            self.parts = self.num_groups
            del self.num_groups

        def forward(self, x):
            self.num_groups = self.parts
            try:
                return super().forward(x)
            finally:
                del self.num_groups

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Anonymous(), nn.Flatten(), nn.LazyLinear(3)).eval()
    model(torch.randn(1, 3, 10, 10))
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(1, 3, 10, 10))
    assert rec.captures == {}
    with torch.inference_mode(), GateRecorder(model, patterns=["1"]) as rec:
        model(torch.randn(1, 3, 10, 10))
    assert list(rec.captures) == ["1"]
    assert (rec.captures["1"].gate - model[1].gates[-1]).abs().max() <= 1e-5
    with pytest.raises(SGEVizError, match="matches no module"):
        GateRecorder(model, patterns=["decoder.*"])


def test_post_add_sge_network_is_analysed_as_itself():
    torch.manual_seed(0)
    model = v.post_add_resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    ref: dict[str, torch.Tensor] = {}
    handles = [m.sig.register_forward_hook(lambda _m, _i, out, n=n: ref.__setitem__(n, out.detach().clone()))
               for n, m in model.named_modules() if n.endswith(".sge")]
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(x)
    for h in handles:
        h.remove()
    assert len(rec.captures) == 8
    for name, cap in rec.captures.items():
        assert (cap.gate - ref[name].reshape(cap.gate.shape)).abs().max() <= 1e-5


def test_the_users_model_is_left_exactly_as_it_was():
    torch.manual_seed(0)
    model = v.ConvNet(v.BlogSGE)
    model.train()
    model.block1[1].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    state = {k: t.clone() for k, t in model.state_dict().items()}
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()]
    loaded = wrap_model(model, input_size="24x32", labels=list("abcde"))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    result = analyze(loaded, image)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(state[k], t) for k, t in model.state_dict().items())  # BatchNorm statistics untouched
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()] == hooks
    # ... and the gates are the eval-mode ones
    reset(model)
    model.eval()
    from sge_viz.capture.preprocess import normalise
    with torch.inference_mode():
        logits = model(normalise(result.image, loaded.config).unsqueeze(0))
    for layer in result.layers:
        assert np.abs(layer.gate - own_gates(model)[layer.name][-1][0].numpy()).max() <= 1e-5
    assert result.predictions[0].index == int(logits.argmax())


def test_one_channel_and_non_square_inputs():
    torch.manual_seed(0)
    model = v.ConvNet(v.FunctionalSGE, in_channels=1).eval()
    loaded = wrap_model(model, input_size="24x40", channels=1, resize="full", cam_layer="block2")
    assert loaded.config.mean == (0.449,) and loaded.config.task == "classify"
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 90, 3), dtype=np.uint8))
    result = analyze(loaded, image)
    # The picture is what the network saw: Pillow's grey of the crop in all three channels, not the colours.
    grey = np.asarray(Image.fromarray(center_crop_view(image, 0, (24, 40))).convert("L"))
    assert result.image.shape == (24, 40, 3) and all((result.image[..., k] == grey).all() for k in range(3))
    assert (explain(loaded, image, ablation=False).image == result.image).all()
    gray = grey.astype(np.float32) / 255
    reset(model)
    with torch.inference_mode():
        model(torch.from_numpy((gray - 0.449) / 0.226)[None, None])
    for layer in result.layers:
        assert np.abs(layer.gate - own_gates(model)[layer.name][-1][0].numpy()).max() <= 1e-5
    assert result.layers[-1].gate.shape == (4, 12, 20)
    # dissect's pictures of the top entries are grey too (a colour pixel in them is a colour the network never saw)
    views = [center_crop_view(image, 0, (24, 40)), center_crop_view(image.rotate(90, expand=True), 0, (24, 40))]
    partial = dissect_batch(loaded, views, ["a", "b"], [None, None], k=2, pictures=True)
    crops = [layer.pictures["crop"] for layer in partial.layers.values()]
    assert all(len(c) and (c[..., 0] == c[..., 1]).all() and (c[..., 1] == c[..., 2]).all() for c in crops)
    assert len(np.unique(views[0].reshape(-1, 3), axis=0)) > 1 and not (views[0][..., 0] == views[0][..., 1]).all()


def test_a_dense_output_is_gates_only():
    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.FunctionalSGE(4))
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return {"out": self.head(self.body(x))}

    loaded = wrap_model(Seg(), input_size=32, resize="full")
    assert loaded.config.task == "gates" and not loaded.config.classifies
    assert any("Gates only" in note for note in loaded.notes)
    result = analyze(loaded, Image.new("RGB", (40, 30), (200, 10, 10)))
    assert result.predictions == [] and result.ood is None and result.layer_names == ["body.1"]
    with pytest.raises(SGEVizError, match="labels"):
        wrap_model(Seg(), labels=["a", "b"])


def test_a_module_named_like_sge_but_not_recognised_is_named_in_a_note():
    class MySGEBlock(nn.Module):  # says SGE, has no group count or per-group parameters
        def forward(self, x):
            return x * torch.sigmoid(x.mean(1, keepdim=True))

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.BlogSGE(4), MySGEBlock(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 16, 16))
    loaded = wrap_model(model, input_size=16)
    assert any("not captured" in note and "2" in note for note in loaded.notes)
