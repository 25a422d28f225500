"""A corpus of SGE forms seen in public code, written here for the tests. Every module records the gate
it computed (``gates``: one (B, G, H, W) tensor per call) so tests can compare captures with it."""
from __future__ import annotations

import torch
from torch import nn


class _Recording(nn.Module):
    def __init__(self):
        super().__init__()
        self.gates: list[torch.Tensor] = []

    def keep(self, gate: torch.Tensor, b: int, g: int) -> torch.Tensor:
        h, w = gate.shape[-2:]
        self.gates.append(gate.detach().reshape(b, g, h, w).clone())
        return gate


class BlogSGE(_Recording):
    """The widely copied blog version: ``sig`` child, weight/bias (1, G, 1, 1), bias init 0."""

    def __init__(self, groups=8):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.randn(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, groups, 1, 1) * 0.5)
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        t = (x * self.avg_pool(x)).sum(dim=1, keepdim=True).view(b * self.groups, -1)
        t = (t - t.mean(dim=1, keepdim=True)) / (t.std(dim=1, keepdim=True) + 1e-5)
        t = t.view(b, self.groups, h, w) * self.weight + self.bias
        a = self.keep(self.squash(t.view(b * self.groups, 1, h, w)), b, self.groups)
        return (x * a).view(b, c, h, w)

    def squash(self, t):
        return self.sig(t)


class RenamedSigmoidSGE(_Recording):
    """Sigmoid child under another name, group count stored as ``G``."""

    def __init__(self, G=4):
        super().__init__()
        self.G = G
        self.weight = nn.Parameter(torch.randn(1, G, 1, 1))
        self.bias = nn.Parameter(torch.randn(1, G, 1, 1))
        self.gate_fn = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.shape
        xg = x.reshape(b, self.G, c // self.G, h, w)
        sim = (xg * xg.mean((3, 4), keepdim=True)).sum(2)
        t = (sim - sim.mean((2, 3), keepdim=True)) / (sim.std((2, 3), keepdim=True) + 1e-5)
        a = self.keep(self.gate_fn(t * self.weight + self.bias), b, self.G)
        return (xg * a.unsqueeze(2)).reshape(b, c, h, w)


class FunctionalSGE(_Recording):
    """gamma/beta of shape (G,), ``torch.sigmoid`` called functionally, ``num_groups``, population std."""

    def __init__(self, num_groups=4):
        super().__init__()
        self.num_groups = num_groups
        self.gamma = nn.Parameter(torch.randn(num_groups))
        self.beta = nn.Parameter(torch.randn(num_groups))

    def forward(self, x):
        b, c, h, w = x.shape
        g = self.num_groups
        xg = x.reshape(b, g, c // g, h, w)
        sim = (xg * xg.mean((3, 4), keepdim=True)).sum(2)
        t = (sim - sim.mean((2, 3), keepdim=True)) / (sim.std((2, 3), keepdim=True, unbiased=False) + 1e-5)
        a = self.keep(torch.sigmoid(t * self.gamma.view(1, g, 1, 1) + self.beta.view(1, g, 1, 1)), b, g)
        return (xg * a.unsqueeze(2)).reshape(b, c, h, w)


class SigChildButFunctionalSGE(BlogSGE):
    """Owns a ``sig`` child but calls ``x.sigmoid()`` (crashed an earlier capture with an IndexError)."""

    def squash(self, t):
        return t.sigmoid()


class NotAGate(BlogSGE):
    """SGE's structure, but the output adds the input back: not one factor per group and position."""

    def forward(self, x):
        return super().forward(x) + x


class HalfGated(BlogSGE):
    """SGE's structure, but only the first half of each group's channels is gated; the rest pass through.
    Its gate is right on each group's first channel, its after-SGE sums and lengths are not."""

    def forward(self, x):
        b, c, h, w = x.shape
        gated = super().forward(x).reshape(b, self.groups, -1, h, w)
        half = gated.shape[2] // 2
        kept = x.reshape(b, self.groups, -1, h, w)[:, :, half:]
        return torch.cat([gated[:, :, :half], kept], 2).reshape(b, c, h, w)


class GateOnlyOnFirstCall(BlogSGE):
    """A gate on its first call (the load-time check), then adds its input back: refused on every later one."""

    def __init__(self, groups=8):
        super().__init__(groups)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = super().forward(x)
        return out if self.calls == 1 else out + x


class ResidualAroundGate(BlogSGE):
    """x * (1 + gate): the gate's sigmoid, but the input is added back."""

    def forward(self, x):
        return super().forward(x) + x


class SigmoidAfterGating(BlogSGE):
    """sigmoid(x * gate): a sigmoid on the gated output."""

    def forward(self, x):
        return torch.sigmoid(super().forward(x))


class ChannelsLastGate(_Recording):
    """SGE computed with the groups last: its sigmoid's values are laid out (B, H, W, G)."""

    def __init__(self, groups=4):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.randn(groups))
        self.bias = nn.Parameter(torch.randn(groups))

    def forward(self, x):
        b, c, h, w = x.shape
        xg = x.reshape(b, self.groups, c // self.groups, h, w)
        sim = (xg * xg.mean((3, 4), keepdim=True)).sum(2)
        t = (sim - sim.mean((2, 3), keepdim=True)) / (sim.std((2, 3), keepdim=True) + 1e-5)
        t = t.permute(0, 2, 3, 1) * self.weight + self.bias  # (B, H, W, G)
        a = torch.sigmoid(t)
        self.gates.append(a.detach().permute(0, 3, 1, 2).clone())
        return (xg * a.permute(0, 3, 1, 2).unsqueeze(2)).reshape(b, c, h, w)


class ConvNet(nn.Module):
    """A plain conv net with one SGE module of the given class after each of two conv blocks."""

    def __init__(self, sge_cls, groups=4, in_channels=3, num_classes=5):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), sge_cls(groups))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), sge_cls(groups))
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.block1(x))
        x = self.block2(x)
        return self.head(x.mean((2, 3)))


class SharedSGENet(nn.Module):
    """One SGE instance called twice per forward."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.sge = BlogSGE(4)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.sge(self.conv1(x))
        x = self.sge(self.conv2(torch.relu(x)))
        return self.head(x.mean((2, 3)))


class SharedNeck(nn.Module):
    """One SGE instance registered as ``neck.p3_att`` and ``neck.p4_att`` and called at both levels, P4 first."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.neck = nn.Module()
        self.neck.p3_att = BlogSGE(4)
        self.neck.p4_att = self.neck.p3_att
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        p3 = torch.relu(self.stem(x))
        p4 = self.neck.p4_att(self.down(p3))
        p3 = self.neck.p3_att(p3)
        return self.head(torch.cat([p3.mean((2, 3)), p4.mean((2, 3))], 1))


def post_add_resnet18(num_classes: int = 1000) -> nn.Module:
    """sge_resnet18's key names, but every block adds the identity *before* SGE: another network."""
    from sge_viz.models.registry import build_model
    from sge_viz.models.resnet import BasicBlock

    class PostAddBasicBlock(BasicBlock):
        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(self.sge(out + identity))

    model, _ = build_model("sge_resnet18")
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            block.__class__ = PostAddBasicBlock
    with torch.no_grad():  # gates that differ from the initial flat ones
        for module in model.modules():
            if hasattr(module, "groups") and hasattr(module, "sig"):
                module.weight.normal_(0, 1)
                module.bias.normal_(0, 1)
    if num_classes != 1000:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


class Enhance1D(nn.Module):  # SGE over a (B, C, L) sequence: weights (1, G, 1)
    def __init__(self, groups=4):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(1, groups, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1))

    def forward(self, x):
        b, c, n = x.shape
        xg = x.reshape(b, self.groups, c // self.groups, n)
        sim = (xg * xg.mean(3, keepdim=True)).sum(2)
        t = (sim - sim.mean(2, keepdim=True)) / (sim.std(2, keepdim=True) + 1e-5)
        return (xg * torch.sigmoid(t * self.weight + self.bias).unsqueeze(2)).reshape(b, c, n)


class Enhance3D(nn.Module):  # SGE over a (B, C, D, H, W) volume: weights (1, G, 1, 1, 1)
    def __init__(self, groups=2, half=False):
        super().__init__()
        self.groups, self.half = groups, half
        self.weight = nn.Parameter(torch.full((1, groups, 1, 1, 1), 0.7))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1, 1))

    def forward(self, x):
        b, c, d, h, w = x.shape
        xg = x.reshape(b, self.groups, c // self.groups, d, h, w)
        sim = (xg * xg.mean((3, 4, 5), keepdim=True)).sum(2)
        gate = torch.sigmoid(sim * self.weight + self.bias).unsqueeze(2)
        if self.half:  # only the first half of each group's channels gated
            gate = torch.cat([gate.expand(-1, -1, c // self.groups // 2, -1, -1, -1),
                              torch.ones_like(xg[:, :, c // self.groups // 2:])], dim=2)
        return (xg * gate).reshape(b, c, d, h, w)


class MixedDimsNet(nn.Module):
    """SGE over a 2-D map, over a 1-D sequence (``seq``) and over a 3-D volume (``vol``: 2 groups, depth 4)."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), FunctionalSGE(4))
        self.seq = Enhance1D(4)
        self.vol = Enhance3D(2)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.block(x)
        s = self.seq(x.flatten(2)).mean(2)
        v3 = self.vol(x.reshape(x.shape[0], 2, 4, x.shape[2], x.shape[3]))
        return self.head(torch.cat([s, v3.flatten(2).mean(2).repeat(1, 4)], 1))
