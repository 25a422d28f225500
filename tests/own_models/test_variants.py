"""Every SGE form of the corpus: captured gates equal the module's own sigmoid output (<= 1e-5), modules
that are not gates are named and skipped, the user's model is left exactly as it was."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sge_viz import analyze, wrap_model
from sge_viz.capture.preprocess import center_crop_view, prepare
from sge_viz.capture.recorder import GateRecorder
from sge_viz.dissect.reduce import dissect_batch
from sge_viz.errors import SGEVizError
from sge_viz.explain.evidence import explain
from sge_viz.io.export import npz_bytes, write_analysis
from sge_viz.metrics.gates import analysis_stats

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


@pytest.mark.parametrize("activations", [True, False])
def test_a_module_that_gates_part_of_each_group_is_refused(activations):
    torch.manual_seed(0)
    model = v.ConvNet(v.HalfGated).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.inference_mode(), GateRecorder(model, activations=activations) as rec:
        model(x)
    # Each group's first channel is gated right, so the first-channel check alone would pass it.
    gate = model.block1[2].gates[-1]
    first = model.block1[2](model.block1[1](model.block1[0](x))).detach()
    assert rec.captures == {} and set(rec.skipped) == {"block1.2", "block2.2"}
    assert all("not on all of its channels" in why for why in rec.skipped.values())
    # The after-SGE group sums it would have drawn (gate x input sums) differ from its real output's by far.
    xin = model.block1[1](model.block1[0](x)).detach()
    b, c, h, w = xin.shape
    derived = gate * xin.reshape(b, 4, c // 4, h, w).sum(2)
    real = first.reshape(b, 4, c // 4, h, w).sum(2)
    assert (derived - real).abs().max() > 0.1 * real.abs().max()
    with pytest.raises(SGEVizError, match="No SGE gate was captured"):
        wrap_model(model, input_size=16)


def test_modules_refused_on_the_image_give_one_clear_error():
    torch.manual_seed(0)
    loaded = wrap_model(v.ConvNet(v.GateOnlyOnFirstCall).eval(), input_size=16)  # passes the load-time check
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    with pytest.raises(SGEVizError, match=r"No SGE gate could be read on this input \(modules: block1\.2, "
                                          r"block2\.2\)\. block1\.2: its output is x \* \(1 \+ gate\)"):
        analyze(loaded, image)
    with pytest.raises(SGEVizError, match="No SGE gate could be read"):
        dissect_batch(loaded, [np.asarray(image)], ["a"], [None], 2)


def test_the_load_time_check_exercises_the_network():
    # On a blank input the added input of NotAGate's first block is the conv bias alone; the probe is random.
    torch.manual_seed(0)
    model = v.ConvNet(v.NotAGate).eval()
    for conv in (model.block1[0], model.block2[0]):
        nn.init.zeros_(conv.bias)
    with pytest.raises(SGEVizError, match="No SGE gate was captured"):
        wrap_model(model, input_size=16)


@pytest.mark.parametrize("form, cause", [(v.ResidualAroundGate, "x * (1 + gate)"),
                                         (v.SigmoidAfterGating, "sigmoid(x * gate)")],
                         ids=["residual", "sigmoid-after"])
def test_refusal_reasons_state_the_cause(form, cause):
    torch.manual_seed(0)
    model = v.ConvNet(form).eval()
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(1, 3, 16, 16))
    assert rec.captures == {} and all(cause in why for why in rec.skipped.values()), rec.skipped
    # --sge-layers already given: the advice is not to give it again.
    with pytest.raises(SGEVizError) as err:
        wrap_model(model, input_size=16, sge_layers=("block*.2",))
    assert cause in str(err.value) and "Name its SGE modules with --sge-layers" not in str(err.value)
    with pytest.raises(SGEVizError, match="Name its SGE modules with --sge-layers"):
        wrap_model(model, input_size=16)


def test_groups_that_do_not_divide_the_channels_and_other_shapes_are_named():
    from sge_viz.capture.recorder import find_gate

    x = torch.randn(1, 10, 4, 4)
    assert "group count 4 does not divide its 10 channels" in find_gate(x, x, [], 4)[1]
    volume = torch.randn(1, 8, 2, 4, 4)
    assert "input (1, 8, 2, 4, 4) is a (B, C, D, H, W) volume" in find_gate(volume, volume, [], 4)[1]
    assert "shape (1, 8, 2, 2) is not its input's (1, 8, 4, 4)" in find_gate(torch.randn(1, 8, 4, 4),
                                                                            torch.randn(1, 8, 2, 2), [], 4)[1]


def test_a_one_dimensional_group_gate_is_named_never_silently_absent(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.FunctionalSGE(4))
            self.seq = v.Enhance1D(4)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            x = self.block(x)
            return self.head(self.seq(x.flatten(2)).mean(2))

    net = Net()
    loaded = wrap_model(net, input_size=16)
    said = [n for n in loaded.notes if n.startswith("seq:")]
    assert len(said) == 1 and "(B, C, L) sequence, (G, L) = (4, 256)" in said[0] and "not drawn" in said[0]
    result = analyze(loaded, Image.new("RGB", (20, 20), (10, 200, 10)))
    assert result.layer_names == ["block.1"] and [n for n in result.notes if n.startswith("seq:")] == said
    # Captured all the same: the module's own sigmoid, recomputed from its input.
    seen = {}
    handle = net.seq.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    with torch.inference_mode():
        net(prepare(Image.new("RGB", (20, 20), (10, 200, 10)), loaded.config)[0])
    handle.remove()
    x = seen["x"]
    xg = x.reshape(1, 4, 2, -1)
    sim = (xg * xg.mean(3, keepdim=True)).sum(2)
    want = torch.sigmoid((sim - sim.mean(2, keepdim=True)) / (sim.std(2, keepdim=True) + 1e-5))[0].numpy()
    np.testing.assert_allclose(result.other_gates["seq"], want, atol=1e-6)
    stats = analysis_stats(result)["other_layers"]["seq"]
    assert stats["shape"] == [256] and stats["mean"] == pytest.approx(list(want.mean(1)), abs=1e-6)
    with np.load(io.BytesIO(npz_bytes(result))) as npz:
        np.testing.assert_array_equal(npz["seq"], result.other_gates["seq"])
    folder = write_analysis(result, tmp_path / "out")
    strip = np.asarray(Image.open(folder / "other_seq.png"))
    assert strip.shape[1] > 500 and (folder / "mosaic_block.1.png").is_file()


def test_a_three_dimensional_group_gate_is_captured_and_a_misfit_refused(tmp_path):
    class Net(nn.Module):
        def __init__(self, half=False):
            super().__init__()
            self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.FunctionalSGE(4))
            self.vol = v.Enhance3D(2, half)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            x = self.block(x)
            v3 = self.vol(x.reshape(x.shape[0], 4, 2, x.shape[2], x.shape[3]))
            return self.head(v3.flatten(2).mean(2).repeat(1, 2))

    loaded = wrap_model(Net(), input_size=8)
    assert any("(G, D, H, W) = (2, 2, 8, 8)" in n for n in loaded.notes), loaded.notes
    result = analyze(loaded, Image.new("RGB", (8, 8), (200, 10, 10)))
    assert result.other_gates["vol"].shape == (2, 2, 8, 8)
    slices = write_analysis(result, tmp_path / "vol") / "other_vol.png"
    assert np.asarray(Image.open(slices)).std() > 0  # a picture, not a blank
    assert 0 < result.other_gates["vol"].min() and result.other_gates["vol"].max() < 1
    refused = wrap_model(Net(half=True), input_size=8)
    why = [n for n in refused.notes if n.startswith("vol:")]
    assert len(why) == 1 and "(B, C, D, H, W) volume" in why[0] and "not its input times" in why[0], refused.notes


def test_a_gate_laid_out_groups_last_is_read_in_sges_layout():
    torch.manual_seed(0)
    model = v.ConvNet(v.ChannelsLastGate).eval()
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(2, 3, 16, 16))
    assert list(rec.captures) == ["block1.2", "block2.2"] and rec.skipped == {}
    for name, own in (("block1.2", model.block1[2].gates[-1]), ("block2.2", model.block2[2].gates[-1])):
        assert (rec.captures[name].gate - own).abs().max() <= 1e-5


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


def test_a_module_shared_by_two_paths_is_named_by_both():
    torch.manual_seed(0)
    model = v.SharedNeck().eval()
    with torch.inference_mode(), GateRecorder(model) as rec:
        model(torch.randn(1, 3, 16, 16))
    # Never credited to one path that may not be the one that ran: P4's call (8x8) comes first here.
    assert list(rec.captures) == ["neck.p3_att=neck.p4_att", "neck.p3_att=neck.p4_att#2"]
    p4, p3 = model.neck.p3_att.gates[-2:]
    assert rec.captures["neck.p3_att=neck.p4_att"].gate.shape[-2:] == (8, 8) == p4.shape[-2:]
    assert (rec.captures["neck.p3_att=neck.p4_att"].gate - p4).abs().max() <= 1e-5
    assert (rec.captures["neck.p3_att=neck.p4_att#2"].gate - p3).abs().max() <= 1e-5
    loaded = wrap_model(model, input_size=16)
    note = [n for n in loaded.notes if n.startswith("neck.p3_att=neck.p4_att:")]
    assert len(note) == 1 and "registered under 2 paths (neck.p3_att, neck.p4_att)" in note[0]
    analysis = analyze(loaded, Image.fromarray(np.full((16, 16, 3), 90, np.uint8)))
    assert analysis.layer_names == ["neck.p3_att=neck.p4_att", "neck.p3_att=neck.p4_att#2"]
    assert any("registered under 2 paths" in n for n in analysis.notes)
    # --sge-layers matches either path.
    with torch.inference_mode(), GateRecorder(model, patterns=("neck.p4_att",)) as rec:
        model(torch.randn(1, 3, 16, 16))
    assert len(rec.captures) == 2


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


def test_an_embedding_is_class_scores_only_until_declared_gates_only(capsys, tmp_path):
    from sge_viz.cli import main

    class Embedder(nn.Module):  # a feature extractor: (1, 12) is an embedding, not 12 class scores
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.FunctionalSGE(4))
            self.proj = nn.Linear(8, 12)

        def forward(self, x):
            return self.proj(self.body(x).mean((2, 3)))

    image = Image.new("RGB", (40, 30), (200, 10, 10))
    read = wrap_model(Embedder(), input_size=32)
    assert read.config.classifies and read.config.class_name(3) == "class 3"
    said = [n for n in read.notes if n.startswith("No class names were given")]
    assert len(said) == 1 and "--labels" in said[0] and "--gates-only" in said[0]
    assert any("No class names were given" in n for n in analyze(read, image).notes)  # where results are read
    declared = wrap_model(Embedder(), input_size=32, gates_only=True)
    assert not declared.config.classifies and declared.config.task == "gates"
    assert any("Gates only, as declared" in n for n in declared.notes)
    assert not any("No class names" in n for n in declared.notes)
    result = analyze(declared, image)
    assert result.predictions == [] and result.ood is None and result.layer_names == ["body.1"]
    with pytest.raises(SGEVizError, match="contradict"):
        wrap_model(Embedder(), labels=[str(i) for i in range(12)], gates_only=True)
    # The command line: --gates-only with --model-def; without --model-def it is a usage error.
    (tmp_path / "emb.py").write_text(
        "import sys\nsys.path.insert(0, " + repr(str(Path(v.__file__).parents[2])) + ")\nimport torch\n"
        "from torch import nn\nfrom tests.own_models import variants as v\n"
        "class Embedder(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.FunctionalSGE(4))\n"
        "        self.proj = nn.Linear(8, 12)\n    def forward(self, x):\n"
        "        return self.proj(self.body(x).mean((2, 3)))\n")
    image.save(tmp_path / "red.png")
    base = ["analyze", str(tmp_path / "red.png"), "--model-def", f"{tmp_path / 'emb.py'}:Embedder",
            "--input-size", "32", "--device", "cpu"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "No class names were given" in err + out and "class " in out
    assert main(base + ["--gates-only", "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    stats = json.loads((tmp_path / "b/red/stats.json").read_text())
    assert stats["predictions"] == [] and "Gates only, as declared" in err + out
    assert main(["analyze", str(tmp_path / "red.png"), "--gates-only", "--out", str(tmp_path / "c")]) == 2
    assert "--gates-only" in capsys.readouterr().err


def test_a_module_named_like_sge_but_not_recognised_is_named_in_a_note():
    class MySGEBlock(nn.Module):  # says SGE, has no group count or per-group parameters
        def forward(self, x):
            return x * torch.sigmoid(x.mean(1, keepdim=True))

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.BlogSGE(4), MySGEBlock(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 16, 16))
    loaded = wrap_model(model, input_size=16)
    assert any("not captured" in note and "2" in note for note in loaded.notes)
