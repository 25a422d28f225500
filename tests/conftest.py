"""Shared test helpers: the one tiny-model factory, checkpoints and images on disk, a free port, a served app."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sge_viz.models.checkpoint import save_safetensors
from sge_viz.models.config import ModelConfig
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS, build_model

# A narrow member of the family: fast enough to build and run many times per test.
TINY_KWARGS = dict(block="basic", layers=[1, 1, 1], widths=[16, 32, 64], groups=8, stem="small", stem_stride=2)
TINY_CONFIG = ModelConfig(arch="sge_resnet_tiny", num_classes=10, input_size=48, resize_size=56,
                          class_names=tuple(f"item {i}" for i in range(10)), arch_kwargs=TINY_KWARGS)
# The demo model's own layout and input size (64x64), saved like the demo model: for app and CLI tests.
DEMO_LIKE_SIZE = 64
DEMO_LIKE_CONFIG = ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=DEMO_LIKE_SIZE,
                               resize_size=DEMO_LIKE_SIZE, mean=(0.3, 0.3, 0.3), std=(0.3, 0.3, 0.3),
                               class_names=tuple(f"class {i}" for i in range(10)), arch_kwargs=dict(DEMO_KWARGS))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory) -> None:
    """The random bands of the faithfulness tests go to a folder of this run, never the user's ~/.cache."""
    os.environ["SGE_VIZ_CACHE"] = str(tmp_path_factory.mktemp("sge_viz_cache"))


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


def make_tiny_model(seed: int = 0, config: ModelConfig = TINY_CONFIG) -> tuple[nn.Module, ModelConfig]:
    """The one tiny-model factory: a small member of the family with non-trivial weights, in eval mode.

    Official SGE init (weight 0, bias 1) gives the same gate everywhere, which would hide a mix-up
    between two requests; perturbed parameters make every image's gates and predictions its own.
    """
    with torch.random.fork_rng():  # the same seed gives the same model, without touching the global RNG
        torch.manual_seed(seed)
        model, config = build_model(config.arch, config)
    return perturb(model, seed=seed), config


def save_tiny(path: Path, seed: int = 0, config: ModelConfig = DEMO_LIKE_CONFIG) -> Path:
    """A tiny model saved as a .safetensors checkpoint (demo layout by default), as the demo model is."""
    model, config = make_tiny_model(seed, config)
    return save_safetensors(model, config, path)


def sge_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n.endswith("sge")]


@pytest.fixture
def tiny_model() -> tuple[nn.Module, ModelConfig]:
    return make_tiny_model(seed=1)


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
    from sge_viz.app.layout import build_ui, launch

    demo = build_ui(service)
    port = free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
