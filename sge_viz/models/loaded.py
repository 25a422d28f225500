"""``LoadedModel``: a model ready for analysis, with its config and where it came from."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from ..device import describe_device
from ..domain.detector import OODDetector, StagedDetector
from .config import ModelConfig


@dataclass
class LoadedModel:
    """A model ready for analysis (eval mode, no gradients), where it came from and how to feed it."""

    model: nn.Module
    config: ModelConfig
    name: str  # how users see it, e.g. "sge_resnet50 (sge_resnet50.pth.tar)"
    source: str  # file path, or "random weights"
    device: torch.device
    dtype: torch.dtype = torch.float32
    metadata: dict[str, str] = field(default_factory=dict)  # what the file says of itself (epoch, accuracy, ...)
    ood: OODDetector | StagedDetector | None = None  # the out-of-domain signal's parameters, when the file carries them
    # What the user must know when reading its results: how the network was built, SGE-like modules that
    # are not captured, SGE layers skipped because they are not spatial group gates.
    notes: list[str] = field(default_factory=list)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device_label(self) -> str:
        return describe_device(self.device)

    @property
    def notes_with_layout(self) -> list[str]:
        """How the network was built (``config.layout_note``, when there is one), then ``notes``."""
        return ([self.config.layout_note] if self.config.layout_note else []) + list(self.notes)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer (names, shapes, dtypes, values): which network this is, whatever
    it is called (e.g. so that a resumed run refuses other weights under the same name)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
