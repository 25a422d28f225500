"""A tiny member of the SGE-ResNet family with non-trivial weights, saved like the demo model.

Official SGE init (weight 0, bias 1) gives the same gate everywhere, which would
hide a mix-up between two requests; random SGE parameters and BN statistics
make every image's gates and predictions its own.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sge_viz.checkpoints import save_safetensors
from sge_viz.config import ModelConfig
from sge_viz.models import DEMO_ARCH, DEMO_KWARGS, build_model

TINY_SIZE = 64


def tiny_config() -> ModelConfig:
    return ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=TINY_SIZE, resize_size=TINY_SIZE,
                       mean=(0.3, 0.3, 0.3), std=(0.3, 0.3, 0.3),
                       class_names=tuple(f"class {i}" for i in range(10)), arch_kwargs=dict(DEMO_KWARGS))


def tiny_model(seed: int = 0) -> tuple[torch.nn.Module, ModelConfig]:
    config = tiny_config()
    torch.manual_seed(seed)
    model, _ = build_model(DEMO_ARCH, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("sge.weight"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 2.0)
            elif name.endswith("sge.bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return model.eval(), config


def save_tiny(path: Path, seed: int = 0) -> Path:
    model, config = tiny_model(seed)
    return save_safetensors(model, config, path)
