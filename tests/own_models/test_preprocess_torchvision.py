"""Preprocessing equals torchvision's transforms on non-square images (<= 1e-5 per value)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from sge_viz.capture.preprocess import center_crop_view, normalise
from sge_viz.models.config import ModelConfig


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (641, 427), (224, 500), (333, 333)])
def test_resize_256_centre_crop_224_matches_torchvision(size):
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    config = ModelConfig(arch="x", num_classes=1, input_size=224, resize_size=256)
    ours = normalise(center_crop_view(image, 256, 224), config)
    theirs = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                        T.Normalize(config.mean, config.std)])(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().max() <= 1e-5


def test_non_square_crop_full_resize_and_grayscale_match_torchvision():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (301, 457, 3), dtype=np.uint8))
    crop = ModelConfig(arch="x", num_classes=1, input_size=(160, 224), resize_size=256)
    ours = normalise(center_crop_view(image, 256, (160, 224)), crop)
    theirs = T.Compose([T.Resize(256), T.CenterCrop((160, 224)), T.ToTensor(), T.Normalize(crop.mean, crop.std)])(image)
    assert ours.shape == theirs.shape == (3, 160, 224) and (ours - theirs).abs().max() <= 1e-5
    gray = ModelConfig(arch="x", num_classes=1, input_size=(96, 128), resize_size=0, mean=(0.5,), std=(0.25,),
                       channels=1)
    ours = normalise(center_crop_view(image, 0, (96, 128)), gray)
    theirs = T.Compose([T.Resize((96, 128)), T.Grayscale(), T.ToTensor(), T.Normalize((0.5,), (0.25,))])(image)
    assert ours.shape == theirs.shape == (1, 96, 128)
    assert (ours - theirs).abs().max() <= 1e-5
    assert torch.isfinite(ours).all()
