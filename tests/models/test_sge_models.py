"""The SGE module and the SGE-ResNet family match the official layout, key for key."""
from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import TINY_CONFIG, perturb
from torch import nn

from sge_viz.capture.recorder import find_sge_layers
from sge_viz.models.registry import available_models, build_model
from sge_viz.models.sge import SpatialGroupEnhance, is_sge_module


@pytest.mark.parametrize("arch, expected", [
    ("sge_resnet18", 11_690_536), ("sge_resnet34", 21_799_720), ("sge_resnet50", 25_559_080),
    ("sge_resnet101", 44_553_384), ("sge_resnet152", 60_199_208),
])
def test_parameter_counts(arch, expected):
    model, _ = build_model(arch)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("arch, tv_builder, layers", [
    ("sge_resnet50", torchvision.models.resnet50, 16),
    ("sge_resnet101", torchvision.models.resnet101, 33),
    ("sge_resnet18", torchvision.models.resnet18, 8),
])
def test_keys_are_torchvision_plus_exactly_the_sge_keys(arch, tv_builder, layers):
    ours = build_model(arch)[0].state_dict()
    theirs = tv_builder(weights=None).state_dict()
    extra = set(ours) - set(theirs)
    assert set(theirs) <= set(ours)
    blocks = sorted({k.rsplit(".", 2)[0] for k in theirs if k.startswith("layer") and k.endswith("conv1.weight")})
    assert len(blocks) == layers
    assert extra == {f"{b}.sge.{p}" for b in blocks for p in ("weight", "bias")}
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
    for key in extra:
        assert ours[key].shape == (1, 64, 1, 1)
    # Same key order as the official release, SGE keys last in each block.
    assert [k for k in ours if k in theirs] == list(theirs)


def test_sge_layer_names_and_order():
    model, _ = build_model("sge_resnet50")
    names = [n for n, _ in find_sge_layers(model)]
    assert len(names) == 16
    assert names[0] == "layer1.0.sge" and names[-1] == "layer4.2.sge" and "layer3.5.sge" in names


def test_official_init_and_child_names():
    sge = SpatialGroupEnhance(64)
    assert torch.equal(sge.weight, torch.zeros(1, 64, 1, 1))
    assert torch.equal(sge.bias, torch.ones(1, 64, 1, 1))
    assert isinstance(sge.sig, nn.Sigmoid)
    assert set(dict(sge.named_parameters())) == {"weight", "bias"}
    assert is_sge_module(sge)
    # At the official init every gate is sigmoid(1), whatever the input.
    x = torch.randn(2, 128, 5, 6)
    expected = x * torch.sigmoid(torch.tensor(1.0))
    assert torch.allclose(sge(x), expected, atol=1e-6)


def test_sge_forward_matches_formula():
    torch.manual_seed(0)
    sge = SpatialGroupEnhance(4)
    with torch.no_grad():
        sge.weight.normal_()
        sge.bias.normal_()
    x = torch.randn(2, 16, 7, 5, dtype=torch.float64)
    sge = sge.double()
    # The paper's formula, one group at a time.
    out = torch.empty_like(x)
    for b in range(2):
        for g in range(4):
            xg = x[b, 4 * g:4 * g + 4]
            sim = (xg * xg.mean(dim=(1, 2), keepdim=True)).sum(0)
            t = (sim - sim.mean()) / (sim.std() + 1e-5)
            a = torch.sigmoid(t * sge.weight[0, g, 0, 0] + sge.bias[0, g, 0, 0])
            out[b, 4 * g:4 * g + 4] = xg * a
    assert torch.allclose(sge(x), out, atol=1e-12)


@pytest.mark.parametrize("block_kind", ["bottleneck", "basic"])
def test_sge_sits_after_the_last_bn_before_the_residual_add(block_kind):
    kwargs = dict(TINY_CONFIG.arch_kwargs, block=block_kind)
    config = TINY_CONFIG.__class__(**{**TINY_CONFIG.__dict__, "arch_kwargs": kwargs})
    model = perturb(build_model(config.arch, config)[0])
    block = model.layer2[0]
    last_bn = block.bn3 if block_kind == "bottleneck" else block.bn2
    seen = {}
    last_bn.register_forward_hook(lambda m, i, o: seen.__setitem__("bn", o.clone()))
    block.sge.register_forward_pre_hook(lambda m, i: seen.__setitem__("sge_in", i[0].clone()))
    block.sge.register_forward_hook(lambda m, i, o: seen.__setitem__("sge_out", o.clone()))
    block.register_forward_pre_hook(lambda m, i: seen.__setitem__("block_in", i[0].clone()))
    block.register_forward_hook(lambda m, i, o: seen.__setitem__("block_out", o.clone()))
    with torch.no_grad():
        model(torch.randn(1, 3, 48, 48))
        identity = block.downsample(seen["block_in"])
    assert torch.equal(seen["sge_in"], seen["bn"])
    assert torch.allclose(seen["block_out"], torch.relu(seen["sge_out"] + identity), atol=1e-6)


def test_registry_and_unknown_names():
    assert {"sge_resnet18", "sge_resnet50", "sge_resnet101", "sge_resnet_demo"} <= set(available_models())
    with pytest.raises(KeyError):
        build_model("resnet_unknown")


def test_group_count_and_parameters_are_found_wherever_a_module_keeps_them():
    """Structure detection reads the group count from the instance, a class attribute or a property, and the
    per-group scale and shift from parameters or buffers; a grouped convolution is not SGE."""

    class ClassCount(nn.Module):
        G = 4

        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(1, 4, 1, 1))
            self.register_buffer("beta", torch.zeros(4))

    class PropertyCount(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight, self.bias = nn.Parameter(torch.ones(8)), nn.Parameter(torch.zeros(8))

        @property
        def num_groups(self):
            return 8

    assert is_sge_module(ClassCount()) and is_sge_module(PropertyCount())
    assert not is_sge_module(nn.Conv2d(8, 8, 3, groups=8)) and not is_sge_module(nn.GroupNorm(4, 8))
    assert [name for name, _ in find_sge_layers(nn.Sequential(nn.Conv2d(3, 8, 1), ClassCount(), PropertyCount()))] \
        == ["1", "2"]


def test_torchs_own_layers_are_never_sge_but_a_subclass_is_looked_at():
    from sge_viz.models.sge import sge_groups

    norm = nn.GroupNorm(8, 8)  # num_groups 8 and a (8,) weight and bias: SGE's parameter shapes
    assert sge_groups(norm) is None

    class GroupGate(nn.GroupNorm):  # a user's class: judged by its structure, wherever its base comes from
        pass

    assert sge_groups(GroupGate(8, 8)) == 8
