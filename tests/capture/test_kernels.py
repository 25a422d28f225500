"""The compiled CPU pass (capture.kernels) against torch and numpy recomputations of the same numbers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from own_models import variants as v
from torch import nn

from sge_viz.capture import kernels
from sge_viz.capture.recorder import GATE_MISFIT, GateRecorder, LayerCapture
from sge_viz.dissect.reduce import _bins, _reduce_cpu
from sge_viz.models.sge import SpatialGroupEnhance, sge_groups


def _layer(b=3, c=24, g=6, h=7, w=9, seed=0):
    """An SGE call's input, gate and output y = x * gate (per group and position)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen) * 3
    gate = torch.sigmoid(torch.randn(b, g, h, w, generator=gen))
    y = (x.reshape(b, g, c // g, h, w) * gate[:, :, None]).reshape(b, c, h, w)
    return x, gate, y


@pytest.mark.parametrize("shape", [(2, 8, 8, 5, 6), (3, 24, 6, 7, 9), (2, 64, 2, 3, 3), (1, 5, 1, 4, 4)])
def test_group_sums_are_the_float64_sums_to_float32_rounding(shape):
    b, c, g, h, w = shape
    x, _, _ = _layer(b, c, g, h, w)
    s1, s2 = kernels.group_sums(x, g)
    xs = x.double().numpy().reshape(b, g, c // g, h, w)
    assert s1.shape == s2.shape == (b, g, h, w) and s1.dtype == s2.dtype == torch.float32
    np.testing.assert_allclose(s1.numpy(), xs.sum(2), rtol=1e-5, atol=1e-5 * np.abs(xs).sum(2).max())
    np.testing.assert_allclose(s2.numpy(), np.square(xs).sum(2), rtol=1e-5)


def test_the_pass_equals_the_reduction_of_the_maps():
    """Histogram cells, maxima and their positions exactly; spatial sums to float64 rounding; the check's
    numbers recomputed with torch."""
    x, gate, y = _layer()
    y[1, 8, 3, 4] += 0.5  # channel 8: the first of group 2 (4 per group), where the check looks
    done = kernels.layer_pass(x, y, gate, keep_squares=True)
    s1, s2 = kernels.group_sums(x, 6)
    assert torch.equal(done.squares, s2)  # the same arithmetic: analyze's lengths are dissect's
    hist, sums, best, where = _reduce_cpu(LayerCapture(gate, s1, None, s2, None, 24))
    assert torch.equal(_bins(torch.from_numpy(done.cells)), hist)
    assert done.cells.sum() == 2 * gate.numel()
    np.testing.assert_array_equal(done.best, best.numpy())
    np.testing.assert_array_equal(done.where, where.numpy())
    np.testing.assert_allclose(done.sums, sums.numpy(), rtol=1e-12)
    np.testing.assert_allclose(done.sums[0], gate.double().sum((2, 3)).numpy(), rtol=1e-12)
    after_sq = (gate.square() * s2).reshape(3, 6, -1)
    np.testing.assert_array_equal(done.where, after_sq.argmax(2).numpy())
    first = x[:, ::4]
    assert done.scale == float(first.abs().amax())
    assert done.error == float((y[:, ::4] - first * gate).abs().amax()) == pytest.approx(0.5, rel=1e-5)
    assert kernels.layer_pass(x, y, gate).squares is None


def test_a_nan_is_the_maximum_as_in_numpy():
    x, gate, y = _layer(b=1, c=8, g=2, h=4, w=4)
    x[0, 5, 2, 3] = float("nan")  # group 1, position 2 * 4 + 3
    done = kernels.layer_pass(x, x * 0 + y, gate)
    assert done.where[0, 1] == 11 and np.isnan(done.best[0, 1])
    assert done.where[0, 0] == int((gate[0, 0].square() * kernels.group_sums(x, 2)[1][0, 0]).argmax())


@pytest.mark.parametrize("form", [SpatialGroupEnhance, v.BlogSGE, v.RenamedSigmoidSGE, v.FunctionalSGE,
                                  v.SigChildButFunctionalSGE])
def test_the_recorder_takes_the_same_numbers_in_its_hooks(form, monkeypatch):
    """Group sums taken as each call begins (where the group count is known), the rest at its end: the
    same numbers as the maps captured at the end and reduced afterwards, for every SGE form of the corpus."""
    torch.manual_seed(0)
    net = v.ConvNet(form).eval()
    x = torch.randn(2, 3, 12, 10)
    early = []
    real = kernels.layer_pass

    def spy(*args, sums=None, **kwargs):
        early.append(sums is not None)
        return real(*args, sums=sums, **kwargs)

    monkeypatch.setattr(kernels, "layer_pass", spy)
    with torch.inference_mode():
        with GateRecorder(net, keep_on_device=True, output_sums=False) as plain:
            net(x)
        with GateRecorder(net, keep_on_device=True, reduce_in_hook=True, keep_squares=True) as fused:
            net(x)
    assert list(fused.captures) == list(plain.captures) == ["block1.2", "block2.2"] and not fused.skipped
    assert early == [sge_groups(net.block1[2]) is not None] * 2
    for name, want in plain.captures.items():
        got = fused.captures[name]
        assert got.reduced is not None and got.before is None and want.reduced is None
        assert torch.equal(got.gate, want.gate) and torch.equal(got.before_sq, want.before_sq)
        hist, sums, best, where = _reduce_cpu(want)
        assert torch.equal(_bins(torch.from_numpy(got.reduced.cells)), hist)
        np.testing.assert_array_equal(got.reduced.best, best.numpy())
        np.testing.assert_array_equal(got.reduced.where, where.numpy())
        np.testing.assert_allclose(got.reduced.sums, sums.numpy(), rtol=1e-12)


def test_the_hook_pass_refuses_what_is_not_a_gate():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), v.NotAGate(4)).eval()  # an extra residual
    with torch.inference_mode(), GateRecorder(net, reduce_in_hook=True) as rec:
        net(torch.randn(2, 3, 12, 10))
    assert rec.captures == {} and rec.skipped == {"1": GATE_MISFIT}


class _Outer(nn.Module):
    """An SGE-like module around another SGE module of the same shape, fed twice the input: y = x * gate."""

    def __init__(self):
        super().__init__()
        self.groups, self.inner = 4, SpatialGroupEnhance(4)
        self.weight = nn.Parameter(torch.randn(1, 4, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, 4, 1, 1))

    def forward(self, x):
        return self.inner(2 * x) / 2


def test_nested_sge_calls_keep_their_own_group_sums():
    """The inner call's sums (of 2x) must not overwrite the outer call's (of x) while it is open."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), _Outer()).eval()
    with torch.no_grad():
        net[1].inner.weight.copy_(torch.randn(1, 4, 1, 1))
    x = torch.randn(2, 3, 12, 10)
    with torch.inference_mode():
        with GateRecorder(net, keep_on_device=True, output_sums=False, patterns=["1"]) as plain:
            net(x)
        with GateRecorder(net, keep_on_device=True, reduce_in_hook=True, patterns=["1"]) as fused:
            net(x)
    assert sorted(fused.captures) == sorted(plain.captures) == ["1", "1.inner"]
    for name, want in plain.captures.items():
        hist, sums, _, where = _reduce_cpu(want)
        got = fused.captures[name].reduced
        assert torch.equal(_bins(torch.from_numpy(got.cells)), hist), name
        np.testing.assert_allclose(got.sums, sums.numpy(), rtol=1e-12)
        np.testing.assert_array_equal(got.where, where.numpy())


@pytest.mark.parametrize("chunks", [2, 3, 7])
def test_a_pass_split_into_spans_equals_one_span(chunks):
    """Every row's numbers do not depend on how the rows are split over threads (7 spans of 6 rows: one
    empty); the parallel drivers run here whatever the thread count."""
    loops = kernels._loops()
    x, gate, y = _layer(b=2, c=12, g=3, h=5, w=7)
    xs, ys, gs = (t.numpy().reshape(t.shape[0], t.shape[1], -1) for t in (x, y, gate))
    results = []
    for n in (1, chunks):
        s1, s2 = np.empty((2, 6, 35), np.float32)
        (loops.sums_spans if n > 1 else lambda *a: loops.sums_span(*a[:4], 0, 1))(xs, 4, s1, s2, n)
        cells, checks = np.zeros((n, 2, kernels.CELLS), np.int64), np.zeros((n, 2), np.int32)
        sums, best, where = np.empty((6, 6)), np.empty(6, np.int32), np.empty(6, np.int64)
        args = (xs, ys, gs, 4, np.empty((n, 2, 35), np.float32), s1, s2, cells, sums, best, where, checks)
        loops.gate_spans(*args) if n > 1 else loops.gate_span(*args, 0)
        results.append((s1, s2, cells.sum(0), sums, best, where, checks.max(0)))
    for one, split in zip(*results):
        np.testing.assert_array_equal(one, split)


def _in_child(queue):
    x, gate, y = _layer(b=2, c=16, g=4, h=9, w=9, seed=3)
    done = kernels.layer_pass(x, y, gate, keep_squares=True)
    queue.put((done.squares.numpy(), done.cells, done.sums))


def test_a_forked_child_runs_the_loops_in_its_own_thread():
    """The parent has started the thread pool (GNU OpenMP's threads do not survive a fork, and numba ends a
    child that uses them): the child's pass finishes and gives the parent's numbers."""
    import multiprocessing

    x, gate, y = _layer(b=2, c=16, g=4, h=9, w=9, seed=3)
    with torch.inference_mode():
        done = kernels.layer_pass(x, y, gate, keep_squares=True)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_in_child, args=(queue,))
    child.start()
    squares, cells, sums = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    np.testing.assert_array_equal(squares, done.squares.numpy())
    np.testing.assert_array_equal(cells, done.cells)
    np.testing.assert_array_equal(sums, done.sums)


def test_passes_from_several_threads_at_once_give_each_its_own_numbers():
    """The app serves requests from several threads: each pass runs its own parallel region."""
    from concurrent.futures import ThreadPoolExecutor

    layers = [_layer(b=2, c=16, g=4, h=11, w=13, seed=s) for s in range(4)]
    expected = [kernels.layer_pass(x, y, gate, keep_squares=True) for x, gate, y in layers]

    def run(i):
        x, gate, y = layers[i % 4]
        return i % 4, kernels.layer_pass(x, y, gate, keep_squares=True)

    with ThreadPoolExecutor(4) as pool:
        for i, done in pool.map(run, range(48)):
            np.testing.assert_array_equal(done.cells, expected[i].cells)
            np.testing.assert_array_equal(done.sums, expected[i].sums)
            assert torch.equal(done.squares, expected[i].squares)
