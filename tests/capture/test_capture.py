"""Gate capture: exact gates, any SGE look-alike, no side effects, no crosstalk between threads."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import structured_image
from torch import nn
from torch.nn.parameter import Parameter

from sge_viz.capture.analysis import analyze, analyze_views
from sge_viz.capture.recorder import GateRecorder, find_sge_layers
from sge_viz.models.factory import LoadedModel
from sge_viz.models.sge import reference_gate


def recompute_gate(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """The paper's gate formula in float64, written here so the check does not trust the library."""
    x = x.double()
    b, c, h, w = x.shape
    xg = x.view(b * groups, c // groups, h, w)
    descriptor = xg.mean(dim=(2, 3), keepdim=True)
    similarity = (xg * descriptor).sum(dim=1).view(b * groups, h * w)
    centred = similarity - similarity.mean(dim=1, keepdim=True)
    std = centred.std(dim=1, keepdim=True, unbiased=True) + 1e-5
    t = (centred / std).view(b, groups, h, w)
    t = t * weight.double().view(1, groups, 1, 1) + bias.double().view(1, groups, 1, 1)
    return 1.0 / (1.0 + torch.exp(-t))


def pre_sge_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each SGE layer's input, caught with the test's own hooks."""
    seen, handles = {}, []
    for name, module in find_sge_layers(model):
        handles.append(module.register_forward_pre_hook(
            lambda m, inp, name=name: seen.__setitem__(name, inp[0].detach().clone())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def all_hooks_gone(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_recorded_gates_equal_independent_recomputation(resnet50):
    model, _ = resnet50
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    inputs = pre_sge_inputs(model, x)
    with torch.no_grad(), GateRecorder(model) as rec:
        model(x)
    assert list(rec.captures) == [n for n, _ in find_sge_layers(model)] and len(rec.captures) == 16
    modules = dict(model.named_modules())
    spread = []
    for name, capture in rec.captures.items():
        sge = modules[name]
        assert sge.weight.abs().min() > 0  # the gate really depends on the features
        expected = recompute_gate(inputs[name], sge.weight, sge.bias, sge.groups)
        assert capture.gate.dtype == torch.float32 and capture.gate.shape == expected.shape
        assert (capture.gate.double() - expected).abs().max() < 1e-5, name
        assert (reference_gate(inputs[name], sge.weight, sge.bias, sge.groups) - capture.gate).abs().max() < 1e-5
        # before/after: sums over each group's channels of the SGE input and output.
        b, c, h, w = inputs[name].shape
        grouped = inputs[name].view(b, sge.groups, c // sge.groups, h, w)
        want_before, want_after = grouped.sum(2), (grouped * expected.unsqueeze(2).float()).sum(2)
        # float32 sums of large activations: compare relative to the layer's scale
        assert (capture.before - want_before).abs().max() <= 1e-5 * want_before.abs().max()
        assert (capture.after - want_after).abs().max() <= 1e-5 * want_after.abs().max()
        # vector lengths ||x_g(p)||_2 over each group's channels, squared, before and after SGE
        want_sq_before = grouped.double().square().sum(2)
        want_sq_after = (grouped.double() * expected.unsqueeze(2)).square().sum(2)
        assert (capture.before_sq - want_sq_before).abs().max() <= 1e-5 * want_sq_before.max()
        assert (capture.after_sq - want_sq_after).abs().max() <= 1e-5 * want_sq_after.max()
        assert (capture.after_sq <= capture.before_sq * (1 + 1e-6)).all()  # a gate never exceeds 1
        spread.append(float(capture.gate.std()))
    assert min(spread) > 0.01  # non-trivial gates, not the constant sigmoid(1) of the official init


class BlogSpatialGroupEnhance(nn.Module):
    """The widely shared blog copy of SGE (bias initialised to 0), not this project's class."""

    def __init__(self, groups=64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = Parameter(torch.zeros(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):  # (b, c, h, w)
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = t / std
        t = t.view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        x = x * self.sig(t)
        x = x.view(b, c, h, w)
        return x


class CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.attn = BlogSpatialGroupEnhance(4)
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), BlogSpatialGroupEnhance(8), nn.ReLU())
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)  # has int groups and weight: not an SGE
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = self.grouped(self.body(self.attn(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


def test_third_party_sge_class_in_a_custom_model():
    torch.manual_seed(1)
    model = CustomNet().eval()
    with torch.no_grad():
        for m in (model.attn, model.body[1]):
            m.weight.normal_()
            m.bias.normal_()
    x = torch.randn(3, 3, 20, 20)
    inputs = pre_sge_inputs(model, x)
    with torch.no_grad(), GateRecorder(model) as rec:
        model(x)
    assert list(rec.captures) == ["attn", "body.1"]
    for name, module in (("attn", model.attn), ("body.1", model.body[1])):
        expected = recompute_gate(inputs[name], module.weight, module.bias, module.groups)
        assert rec.captures[name].gate.shape == (3, module.groups) + tuple(inputs[name].shape[-2:])
        assert (rec.captures[name].gate.double() - expected).abs().max() < 1e-5
        # A look-alike's output is reduced as it is (not derived): the same lengths as recomputed.
        b, c, h, w = inputs[name].shape
        after = module(inputs[name]).view(b, module.groups, c // module.groups, h, w)
        torch.testing.assert_close(rec.captures[name].after_sq, after.square().sum(2), rtol=1e-5, atol=1e-6)
    assert all_hooks_gone(model)


def test_hooks_removed_after_exit_and_after_exceptions(tiny_model):
    model, _ = tiny_model
    assert all_hooks_gone(model)
    with GateRecorder(model) as rec:
        assert not all_hooks_gone(model)
        with torch.no_grad():
            model(torch.randn(1, 3, 48, 48))
    assert all_hooks_gone(model) and rec.captures
    with pytest.raises(RuntimeError):
        with GateRecorder(model):
            model(torch.randn(1, 5, 48, 48))  # wrong channel count fails inside the block
    assert all_hooks_gone(model)
    with pytest.raises(KeyError):
        with GateRecorder(model):
            raise KeyError("user code failing")
    assert all_hooks_gone(model)


def test_outputs_bit_identical_with_and_without_recorder(resnet50):
    model, _ = resnet50
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        bare = model(x)
        with GateRecorder(model):
            recorded = model(x)
        again = model(x)
    assert torch.equal(bare, recorded) and torch.equal(bare, again)


def test_concurrent_recorders_on_one_model_never_mix(tiny_model):
    model, _ = tiny_model
    inputs = [torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(100 + i)) for i in range(6)]

    def capture(x):
        with torch.no_grad(), GateRecorder(model) as rec:
            out = model(x)
        return out, {k: v.gate.clone() for k, v in rec.captures.items()}

    single = [capture(x) for x in inputs]
    barrier = threading.Barrier(6)

    def worker(i):
        barrier.wait()  # start together so the forwards overlap
        return [capture(inputs[i]) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(worker, range(6)))
    for i, runs in enumerate(results):
        for out, gates in runs:
            assert torch.equal(out, single[i][0])
            assert gates.keys() == single[i][1].keys()
            for name in gates:
                assert torch.equal(gates[name], single[i][1][name]), (i, name)
    # distinct inputs really give distinct gates, so a mix-up could not pass unnoticed
    assert not torch.equal(single[0][1]["layer3.0.sge"], single[1][1]["layer3.0.sge"])
    assert all_hooks_gone(model)


def test_forward_in_another_thread_is_not_recorded(tiny_model):
    model, _ = tiny_model
    mine = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    other = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), GateRecorder(model) as expected_rec:
        model(mine)
    with torch.no_grad(), GateRecorder(model) as rec:
        model(mine)
        t = threading.Thread(target=lambda: model(other))
        t.start()
        t.join()
    for name, cap in rec.captures.items():
        assert torch.equal(cap.gate, expected_rec.captures[name].gate)


def test_analyze_batched_equals_single(tiny_model):
    model, config = tiny_model
    loaded = LoadedModel(model, config, "tiny", "test", torch.device("cpu"))
    images = [structured_image(seed=s) for s in (0, 1)]
    singles = [analyze(loaded, im) for im in images]
    from sge_viz.capture.preprocess import prepare

    batch = analyze_views(loaded, [prepare(im, config)[1] for im in images])
    for single, batched in zip(singles, batch):
        assert single.image.shape == (48, 48, 3)
        assert [p.index for p in single.predictions] == [p.index for p in batched.predictions]
        assert single.layer_names == batched.layer_names == [n for n, _ in find_sge_layers(model)]
        for a, b in zip(single.layers, batched.layers):
            assert isinstance(a.gate, np.ndarray) and a.gate.dtype == np.float32
            assert np.abs(a.gate - b.gate).max() < 1e-5
    assert np.abs(singles[0].layers[-1].gate - singles[1].layers[-1].gate).max() > 1e-3
