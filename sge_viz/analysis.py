"""One image (or a batch) through a model with gate capture: the single forward everything else draws on."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .capture import GateRecorder
from .checkpoints import LoadedModel
from .config import ModelConfig
from .images import center_crop_view, normalise


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


@dataclass
class LayerGates:
    """One SGE layer for one image: arrays of shape (G, H, W), float32."""

    name: str
    gate: np.ndarray
    before: np.ndarray
    after: np.ndarray

    @property
    def groups(self) -> int:
        return self.gate.shape[0]


@dataclass
class Analysis:
    """Everything the pictures and statistics need; no torch objects inside."""

    image: np.ndarray  # (S, S, 3) uint8: the crop the network saw
    predictions: list[Prediction]
    layers: list[LayerGates]
    model_name: str = ""
    extras: dict = field(default_factory=dict)

    def layer(self, name: str) -> LayerGates:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


def top_k(probs: torch.Tensor, config: ModelConfig, k: int = 5) -> list[Prediction]:
    values, indices = probs.topk(min(k, probs.numel()))
    return [Prediction(int(i), config.class_name(int(i)), float(v)) for v, i in zip(values, indices)]


def run_batch(loaded: LoadedModel, batch: torch.Tensor, activations: bool = True) -> tuple[torch.Tensor, GateRecorder]:
    """Forward a normalised batch with capture; probabilities (B, classes) on the CPU."""
    x = batch.to(loaded.device, loaded.dtype, non_blocking=True)
    with torch.inference_mode(), GateRecorder(loaded.model, activations=activations) as recorder:
        logits = loaded.model(x)
    return logits.float().softmax(dim=1).cpu(), recorder


def analyze_views(loaded: LoadedModel, views: list[np.ndarray], activations: bool = True) -> list[Analysis]:
    """Analyse already-cropped RGB views (each (S, S, 3) uint8) in one batched forward."""
    batch = torch.stack([normalise(v, loaded.config) for v in views])
    probs, recorder = run_batch(loaded, batch, activations)
    results = []
    for i, view in enumerate(views):
        layers = []
        for name in recorder.layer_names:
            cap = recorder.captures[name]
            gate = cap.gate[i].numpy()
            before = cap.before[i].numpy() if cap.before is not None else np.zeros_like(gate)
            after = cap.after[i].numpy() if cap.after is not None else np.zeros_like(gate)
            layers.append(LayerGates(name, gate, before, after))
        results.append(Analysis(view, top_k(probs[i], loaded.config), layers, loaded.name))
    return results


def analyze(loaded: LoadedModel, image: Image.Image) -> Analysis:
    """Preprocess an RGB PIL image, run one forward with capture, return plain arrays."""
    # The crop alone: analyze_views normalises it (prepare() would normalise it a second time).
    view = center_crop_view(image, loaded.config.resize_size, loaded.config.input_size)
    return analyze_views(loaded, [view])[0]
