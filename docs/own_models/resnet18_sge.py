"""A torchvision ResNet-18 with an SGE module added by hand after each block's ``bn2``, the way people
retrofit SGE into an existing network (here a copy of the widely shared SGE code: bias starts at 0,
8 groups).

    python -m sge_viz analyze IMAGE --model-def docs/own_models/resnet18_sge.py:resnet18_sge \\
        --model-kwargs '{"num_classes": 10}' --checkpoint runs/resnet18_sge.pth

Run this file to write ``runs/resnet18_sge.pth``: a state_dict of the untrained network, standing in for
your trained weights.
"""
import sys
from pathlib import Path

import torch
import torchvision
from torch import nn


class SpatialGroupEnhance(nn.Module):
    def __init__(self, groups=8):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = (x * self.avg_pool(x)).sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = (t / std).view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        x = x * self.sig(t.view(b * self.groups, 1, h, w))
        return x.view(b, c, h, w)


def resnet18_sge(num_classes=1000):
    """torchvision's resnet18 with ``bn2`` of every block replaced by ``Sequential(bn2, SGE)``."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            block.bn2 = nn.Sequential(block.bn2, SpatialGroupEnhance(8))
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/resnet18_sge.pth")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = resnet18_sge(num_classes=10)
    with torch.no_grad():  # gates that differ from group to group, as trained ones do
        for module in model.modules():
            if isinstance(module, SpatialGroupEnhance):
                module.weight.normal_(0, 1)
    torch.save(model.state_dict(), out)
    print(f"wrote {out}")
