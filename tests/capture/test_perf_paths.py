"""The fast paths give the same results as the plain ones (no timings asserted here: see bench/)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from own_models.variants import NotAGate
from torch import nn

from sge_viz import viz as render
from sge_viz.capture.recorder import GateRecorder
from sge_viz.models.sge import SpatialGroupEnhance


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_threaded_mosaics_equal_one_call_per_layer(rng):
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    layers = [rng.random((g, s, s), dtype=np.float32) for g, s in ((16, 9), (10, 5), (64, 3), (1, 4))]
    orders = [list(rng.permutation(16)), None, list(range(63, -1, -1)), None]
    highlights = [3, None, 60, 0]
    expected = [render.mosaic(image, gates, order=order, highlight=h, tile=24, cmap="viridis", alpha=0.4)
                for gates, order, h in zip(layers, orders, highlights)]
    for workers in (1, 2, 4):
        got = render.mosaics(image, layers, orders, highlights, workers=workers, tile=24, cmap="viridis", alpha=0.4)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.dtype == np.uint8 and np.array_equal(a, b)


def test_threaded_mosaics_reject_mismatched_lists(rng):
    with pytest.raises(ValueError):
        render.mosaics(np.zeros((8, 8, 3), np.uint8), [np.zeros((4, 2, 2), np.float32)], orders=[None, None])


def test_after_sums_match_the_module_output():
    torch.manual_seed(0)
    module = SpatialGroupEnhance(4).eval()
    with torch.no_grad():
        module.weight.copy_(torch.randn(1, 4, 1, 1))
        module.bias.copy_(torch.randn(1, 4, 1, 1))
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), module)
    x = torch.randn(2, 3, 12, 10)
    with torch.inference_mode(), GateRecorder(net) as rec:
        out = net(x)
        pre = net[0](x)
    cap = rec.captures["1"]
    want_before = pre.reshape(2, 4, 4, 12, 10).sum(2)
    want_after = out.reshape(2, 4, 4, 12, 10).sum(2)
    for got, want in ((cap.before, want_before), (cap.after, want_after)):
        assert got.device.type == "cpu" and got.dtype == torch.float32
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert cap.gate.shape == (2, 4, 12, 10) and cap.gate.dtype == torch.float32


def test_a_look_alike_that_is_not_a_gate_is_skipped_by_name():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), NotAGate(4)).eval()  # the corpus' look-alike with an extra residual
    with torch.inference_mode(), GateRecorder(net) as rec:
        net(torch.randn(2, 3, 12, 10))
    assert rec.captures == {}
    assert list(rec.skipped) == ["1"] and "not a spatial group gate" in rec.skipped["1"]


def test_png_files_hold_the_same_pixels_and_are_written_once(tmp_path, rng):
    from PIL import Image

    from sge_viz.io import tempfiles as pngcache

    image = rng.integers(0, 256, (30, 47, 3), dtype=np.uint8)
    first = pngcache.png_path(image, root=tmp_path)
    assert np.array_equal(np.asarray(Image.open(first).convert("RGB")), image)
    mtime = tmp_path.joinpath(first).stat().st_mtime_ns
    again = pngcache.png_path(image.copy(), root=tmp_path)
    assert again == first and len(list(tmp_path.glob("*.png"))) == 1
    assert tmp_path.joinpath(first).stat().st_mtime_ns >= mtime
    other = image.copy()
    other[0, 0, 0] ^= 1
    assert pngcache.png_path(other, root=tmp_path) != first
    # same bytes, other shape: another picture
    assert pngcache.png_path(image.reshape(47, 30, 3), root=tmp_path) not in (first,)
    with pytest.raises(ValueError):
        pngcache.png_path(np.zeros((4, 4), np.uint8), root=tmp_path)


def test_channels_last_model_gives_the_same_outputs_and_gates():
    from sge_viz.models.registry import build_model

    torch.manual_seed(3)
    model, _ = build_model("sge_resnet50")
    model = model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("sge.weight", "sge.bias")):
                p.copy_(torch.randn(p.shape))
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode(), GateRecorder(model) as plain:
        want = model(x)
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode(), GateRecorder(model) as last:
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    for name, cap in plain.captures.items():
        assert (last.captures[name].gate - cap.gate).abs().max() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_group_sums_reduce_in_float32(dtype):
    """Half-precision activations (GPUs) are reduced in float32 without a float32 copy: the group sums
    and sums of squares match those of the same values in float32, to float32 rounding."""
    from sge_viz.capture.recorder import group_sums

    x = (torch.randn(2, 12, 5, 7) * 30).to(dtype)  # squares up to ~1e4: past float16's precision, not float32's
    s1, s2 = group_sums(x, 3)
    w1, w2 = group_sums(x.float(), 3)
    assert s1.dtype == s2.dtype == torch.float32 and s1.shape == (2, 3, 5, 7)
    torch.testing.assert_close(s1, w1, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(s2, w2, rtol=1e-5, atol=0)
    channels_last = x.contiguous(memory_format=torch.channels_last)  # as a GPU model in channels_last hands it
    torch.testing.assert_close(group_sums(channels_last, 3)[1], s2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("per_group", [1, 4, 8, 16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_group_sums_match_the_definition(per_group, channels_last):
    """Float32 group sums on the CPU (channel planes added for <= 8 channels per group, a reduction
    otherwise) equal the float64 sums over each group's channels, in either memory layout, and leave
    the input unchanged."""
    from sge_viz.capture.recorder import group_sums

    g = 3
    x = torch.randn(2, g * per_group, 5, 7) * 4
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    s1, s2 = group_sums(x, g)
    xg = x.double().reshape(2, g, per_group, 5, 7)
    assert s1.dtype == s2.dtype == torch.float32 and s1.shape == s2.shape == (2, g, 5, 7)
    torch.testing.assert_close(s1.double(), xg.sum(2), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(s2.double(), xg.square().sum(2), rtol=1e-6, atol=1e-5)
    assert torch.equal(x, before)
