"""Spatial Group-wise Enhance, exactly as the paper's official code computes it.

Li, Hu, Yang, "Spatial Group-wise Enhance" (arXiv 1905.09646). The gate is the
output of the child module ``sig``; the capture code hooks it there.
"""
from __future__ import annotations

import re

import torch
from torch import nn


class SpatialGroupEnhance(nn.Module):
    """SGE over (B, C, H, W) features in ``groups`` groups (C divisible by ``groups``).

    Per group g: descriptor = spatial mean; c = sum over the group's channels of x * descriptor;
    t = (c - mean_hw c) / (std_hw c + 1e-5) (unbiased std); gate a = sigmoid(t * weight[g] + bias[g]),
    shape (B, G, H, W) in (0, 1); output x * a. ``weight``, ``bias``: (1, G, 1, 1), initialised 0 and 1.
    """

    def __init__(self, groups: int = 64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        # Official init (weight 0, bias 1): every gate starts at sigmoid(1).
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        x = x.reshape(b * self.groups, -1, h, w)  # a view for NCHW; a copy for channels_last input
        xn = (x * self.avg_pool(x)).sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = (t / std).view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        x = x * self.sig(t)
        return x.view(b, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


GROUP_ATTRS = ("groups", "G", "num_groups")  # where copies in circulation keep their group count
GATE_PARAMS = (("weight", "bias"), ("gamma", "beta"))  # the per-group scale and shift of the normalised map
_TORCH_LAYERS = "torch.nn."  # where torch's own module classes live (a subclass lives with its author)


def sge_groups(module: nn.Module) -> int | None:
    """The group count G of an SGE module recognised by its structure, else None.

    Recognised: this project's class, the official module and its copies: an int group count stored as
    ``groups``, ``G`` or ``num_groups``, and a per-group scale and shift (``weight``/``bias`` or
    ``gamma``/``beta``) of shape (G,) or (1, G, 1, 1) ((1, G, 1) and (1, G, 1, 1, 1) for 1-D and 3-D
    variants). The sigmoid may be a child under any name or a
    functional call; whether the module really gates its input is checked on every captured call. torch's own
    layers (``torch.nn.*`` classes, e.g. a GroupNorm with as many channels as groups) are never SGE.
    """
    if isinstance(module, SpatialGroupEnhance):
        return module.groups
    if type(module).__module__.startswith(_TORCH_LAYERS):
        return None  # torch's own layers (a GroupNorm with G channels has SGE's parameter shapes, not its gate)
    groups = next((g for g in (_attribute(module, a) for a in GROUP_ATTRS)
                   if isinstance(g, int) and not isinstance(g, bool) and g > 0), None)
    if groups is None:
        return None
    for scale, shift in GATE_PARAMS:
        w, b = _attribute(module, scale), _attribute(module, shift)
        if isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor) and _per_group(w.shape, groups) \
                and _per_group(b.shape, groups):
            return groups
    return None


def _attribute(module: nn.Module, name: str) -> object:
    """``getattr(module, name, None)`` without nn.Module's slow miss (its ``__getattr__`` raises for every
    absent name): every module of a network is asked on each recorder's start."""
    found = module.__dict__
    if name in found:
        return found[name]
    for store in ("_parameters", "_buffers", "_modules"):
        if name in found.get(store, ()):
            return found[store][name]
    on_class = getattr(type(module), name, None)
    return getattr(module, name, None) if isinstance(on_class, property) else on_class


def _per_group(shape: torch.Size, groups: int) -> bool:
    """One value per group: (G,), or (1, G, 1, ...) for any number of spatial dimensions (1-D and 3-D
    variants are recognised too, so that a module the capture cannot draw is named, never silently left out)."""
    shape = tuple(shape)
    return shape == (groups,) or (len(shape) >= 3 and shape[:2] == (1, groups) and set(shape[2:]) == {1})


def is_sge_module(module: nn.Module) -> bool:
    """True for modules ``sge_groups`` recognises as SGE (this project's, the official one, known copies)."""
    return sge_groups(module) is not None


def looks_like_sge(module: nn.Module) -> bool:
    """Whether a module's class name says it is an SGE / spatial group module (used to warn about such
    modules that were not captured)."""
    name = type(module).__name__
    return "SGE" in name or bool(re.search(r"(^|_)sge|spatial_?group", name.lower()))


def reference_gate(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """The gate (B, G, H, W) recomputed from pre-SGE features, step by step as the paper defines it.

    Written independently of ``SpatialGroupEnhance.forward`` so tests can check
    captured gates against it.
    """
    b, c, h, w = x.shape
    xg = x.reshape(b, groups, c // groups, h, w)
    g = xg.mean(dim=(3, 4), keepdim=True)
    sim = (xg * g).sum(dim=2)  # (B, G, H, W)
    flat = sim.reshape(b, groups, h * w)
    t = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, unbiased=True, keepdim=True) + 1e-5)
    t = t.reshape(b, groups, h, w) * weight.reshape(1, groups, 1, 1) + bias.reshape(1, groups, 1, 1)
    return torch.sigmoid(t)
