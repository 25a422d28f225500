"""Spatial Group-wise Enhance, exactly as the paper's official code computes it.

Li, Hu, Yang, "Spatial Group-wise Enhance" (arXiv 1905.09646). The gate is the
output of the child module ``sig``; the capture code hooks it there.
"""
from __future__ import annotations

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


def is_sge_module(module: nn.Module) -> bool:
    """True for our SGE class and for look-alike copies (e.g. the blog version).

    A look-alike has an int ``groups``, ``weight`` and ``bias`` of shape
    (1, G, 1, 1) and a sigmoid child named ``sig``.
    """
    if isinstance(module, SpatialGroupEnhance):
        return True
    groups = getattr(module, "groups", None)
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    sig = getattr(module, "sig", None)
    if not isinstance(groups, int) or isinstance(groups, bool):
        return False
    shape = (1, groups, 1, 1)
    return (
        isinstance(weight, torch.Tensor)
        and isinstance(bias, torch.Tensor)
        and tuple(weight.shape) == shape
        and tuple(bias.shape) == shape
        and isinstance(sig, nn.Sigmoid)
    )


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
