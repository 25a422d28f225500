"""A small UNet for 1-channel images with an SGE re-implementation of another attribute layout: group
count ``G``, per-group parameters ``gamma``/``beta`` of shape (G,), ``torch.sigmoid`` called in the
forward and the population standard deviation. Its output is a dense map, so sge-viz shows gates only.

    python -m sge_viz analyze IMAGE --model-def docs/own_models/unet_sge.py:UNet \\
        --channels 1 --resize full --input-size 64
"""
import torch
from torch import nn


class SGEUnit(nn.Module):
    def __init__(self, G=4):
        super().__init__()
        self.G = G
        self.gamma = nn.Parameter(torch.ones(G))
        self.beta = nn.Parameter(torch.zeros(G))

    def forward(self, x):
        b, c, h, w = x.shape
        xg = x.reshape(b, self.G, c // self.G, h, w)
        sim = (xg * xg.mean((3, 4), keepdim=True)).sum(2)
        t = (sim - sim.mean((2, 3), keepdim=True)) / (sim.std((2, 3), keepdim=True, unbiased=False) + 1e-5)
        a = torch.sigmoid(t * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1))
        return (xg * a.unsqueeze(2)).reshape(b, c, h, w)


def conv_block(cin, cout, groups):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), SGEUnit(groups))


class UNet(nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        torch.manual_seed(0)
        self.enc1 = conv_block(1, 16, 4)
        self.enc2 = conv_block(16, 32, 8)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec = conv_block(32, 16, 4)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        return self.head(self.dec(torch.cat([e1, self.up(e2)], 1)))
