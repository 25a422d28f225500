"""Shared fixtures: small SGE models with non-trivial weights, checkpoints and images on disk."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sge_viz.checkpoints import save_safetensors
from sge_viz.config import ModelConfig
from sge_viz.models import build_model

# A narrow member of the family: fast enough to build and run many times per test.
TINY_KWARGS = dict(block="basic", layers=[1, 1, 1], widths=[16, 32, 64], groups=8, stem="small", stem_stride=2)
TINY_CONFIG = ModelConfig(arch="sge_resnet_tiny", num_classes=10, input_size=48, resize_size=56,
                          class_names=tuple(f"item {i}" for i in range(10)), arch_kwargs=TINY_KWARGS)


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN buffer non-default values (SGE weights non-zero, BN stats non-trivial)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
            elif name.endswith(("sge.weight", "sge.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            else:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=gen))
    return model.eval()


def sge_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n.endswith("sge")]


@pytest.fixture
def tiny_model() -> tuple[nn.Module, ModelConfig]:
    model, config = build_model(TINY_CONFIG.arch, TINY_CONFIG)
    return perturb(model, seed=1), config


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, tiny_model) -> Path:
    model, config = tiny_model
    return save_safetensors(model, config, tmp_path / "tiny.safetensors")


@pytest.fixture(scope="session")
def resnet50():
    model, config = build_model("sge_resnet50")
    return perturb(model, seed=50), config


def structured_image(width: int = 120, height: int = 90, seed: int = 0) -> Image.Image:
    """A photo-like test picture: a bright ellipse on a textured gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width * 180, yy / height * 120, np.full_like(xx, 60.0)], axis=-1)
    inside = ((xx - width * 0.55) / (width * 0.25)) ** 2 + ((yy - height * 0.5) / (height * 0.3)) ** 2 < 1
    base[inside] = (240, 220, 40)
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    structured_image().save(path, quality=92)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_app(service) -> Iterator[str]:
    """The Gradio app over ``service`` on a free localhost port; yields its URL, closes it afterwards."""
    from sge_viz.ui import build_ui, launch

    demo = build_ui(service)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
