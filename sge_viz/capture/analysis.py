"""One image (or a batch) through a model with gate capture: the single forward everything else draws on."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..domain import Judge, Verdict
from ..errors import SGEVizError
from ..models.config import ModelConfig
from ..models.loaded import LoadedModel
from .hooks import evaluating
from .preprocess import center_crop_view, normalise, normalise_batch, seen_view
from .recorder import GateRecorder, other_gate_note, require_gates


@dataclass(frozen=True)
class Prediction:
    """One class of the top-k: its index, name and softmax probability in [0, 1]."""

    index: int
    label: str
    probability: float


@dataclass
class LayerGates:
    """One SGE layer for one image: arrays of shape (G, H, W), float32.

    ``gate`` in (0, 1); ``before``/``after``: SGE's input/output summed over each group's channels (signed);
    ``before_length``/``after_length``: the group's vector length ||x_g(p)||_2 over its channels (>= 0), the
    quantity of the paper's activation histograms. Zeros when activations were not captured.
    """

    name: str
    gate: np.ndarray
    before: np.ndarray
    after: np.ndarray
    before_length: np.ndarray | None = None
    after_length: np.ndarray | None = None

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
    image_name: str = "image"  # for captions: the file name the user gave
    device: str = ""  # where it ran, e.g. "CPU" or "GPU: <name>"
    seconds: float = 0.0  # forward + capture time
    mask: np.ndarray | None = None  # (S, S) bool item mask cropped like ``image``, when one is known
    true_class: str | None = None  # the image's true class when it is a shipped example scene
    # The out-of-domain verdict, or None when the model carries no measured signal.
    ood: Verdict | None = None
    # SGE layers left out of this image's analysis, each with why ("name: not a spatial group gate: ..."),
    # and the model's own notes (how it was built, modules not captured): shown wherever results are read.
    notes: list[str] = field(default_factory=list)
    # Gates over 1-D and 3-D inputs, by layer name: (G, L) or (G, D, H, W) float32 in (0, 1); not drawn.
    other_gates: dict[str, np.ndarray] = field(default_factory=dict)

    def layer(self, name: str) -> LayerGates:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]


def top_k(probs: torch.Tensor, config: ModelConfig, k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes of one probability vector (classes,), most probable first."""
    values, indices = probs.topk(min(k, probs.numel()))
    return [Prediction(int(i), config.class_name(int(i)), float(v)) for v, i in zip(values, indices)]


def require_class_scores(loaded: LoadedModel) -> None:
    """Raise SGEVizError, saying what to use instead, when the model gives no class scores (gates only)."""
    if not loaded.config.classifies:
        raise SGEVizError(f"{loaded.name} gives no class scores (gates only): there is nothing to predict; "
                          "use analyze or dissect to see its gates.")


def predict(loaded: LoadedModel, image: Image.Image, k: int = 5) -> list[Prediction]:
    """The top-``k`` classes of an RGB PIL image: one plain forward, no capture.

    Raises SGEVizError for a gates-only model (its output is not class scores)."""
    require_class_scores(loaded)
    x = normalise(center_crop_view(image, loaded.config.resize_size, loaded.config.input_size), loaded.config)
    with torch.inference_mode(), evaluating(loaded.model):
        logits = loaded.model(x.unsqueeze(0).to(loaded.device, loaded.dtype))
    return top_k(logits.float().softmax(dim=1)[0].cpu(), loaded.config, k)


def sge_layer_shapes(loaded: LoadedModel) -> list[dict]:
    """Every SGE layer of the model with its group count and gate map size at the model's input size:
    ``[{"name", "groups", "height", "width"}, ...]`` in forward order (one forward of a blank image)."""
    config = loaded.config
    x = torch.zeros(1, config.channels, config.height, config.width, device=loaded.device, dtype=loaded.dtype)
    with torch.inference_mode(), GateRecorder(loaded.model, activations=False, patterns=config.sge_layers) as recorder:
        loaded.model(x)
    return [{"name": name, "groups": int(cap.gate.shape[1]), "height": int(cap.gate.shape[2]),
             "width": int(cap.gate.shape[3])} for name, cap in recorder.captures.items()]


def run_batch(loaded: LoadedModel, batch: torch.Tensor, activations: bool = True,
              judge: Judge | None = None) -> tuple[torch.Tensor | None, GateRecorder]:
    """Forward a normalised batch with capture; probabilities (B, classes) on the CPU, or None for a
    gates-only model (whatever its output is, only the gates are read).

    ``judge``: when given, it reads its detector's features off the same forward (``sge_viz.domain.Judge``).
    """
    x = batch.to(loaded.device, loaded.dtype, non_blocking=True)
    patterns = loaded.config.sge_layers
    judge = judge or Judge(None)
    with torch.inference_mode(), GateRecorder(loaded.model, activations=activations, patterns=patterns) as recorder:
        # Only this call's forward (the recorder's context) is read: the model may serve other threads.
        with judge.watching(loaded.model, active=recorder._mine):
            logits = loaded.model(x)
    if not loaded.config.classifies:
        return None, recorder
    return logits.float().softmax(dim=1).cpu(), recorder


def analyze_views(loaded: LoadedModel, views: list[np.ndarray], activations: bool = True) -> list[Analysis]:
    """Analyse already-cropped RGB views (each (H, W, 3) uint8, the model's input size) in one batched
    forward. ``activations=False`` skips the before/after maps (they come back as zeros). A gates-only
    model gives no predictions and no out-of-domain verdict."""
    batch = normalise_batch(views, loaded.config, loaded.device, loaded.dtype)
    judge = Judge(getattr(loaded, "ood", None) if loaded.config.classifies else None)
    probs, recorder = run_batch(loaded, batch, activations, judge)
    require_gates(recorder)
    verdicts = judge.verdicts(len(views))
    results = []
    for i, view in enumerate(views):
        layers = []
        for name in recorder.layer_names:
            cap = recorder.captures[name]
            gate = cap.gate[i].numpy()
            before, after, before_sq, after_sq = (
                getattr(cap, key)[i].numpy() if getattr(cap, key) is not None else np.zeros_like(gate)
                for key in ("before", "after", "before_sq", "after_sq"))
            layers.append(LayerGates(name, gate, before, after, np.sqrt(before_sq), np.sqrt(after_sq)))
        predictions = top_k(probs[i], loaded.config) if probs is not None else []
        built = getattr(loaded, "notes_with_layout", None)  # how the network was built, then the model's notes
        notes = list(getattr(loaded, "notes", []) if built is None else built)
        # A module skipped at load time too is already named in the model's notes: once is enough.
        notes += [note for note in (f"{name}: {why}" for name, why in recorder.skipped.items()) if note not in notes]
        notes += [note for note in (other_gate_note(name, g) for name, g in recorder.other.items())
                  if note not in notes]
        results.append(Analysis(seen_view(view, loaded.config), predictions, layers, loaded.name, ood=verdicts[i],
                                notes=notes, other_gates={name: g[i].numpy() for name, g in recorder.other.items()}))
    return results


def analyze(loaded: LoadedModel, image: Image.Image) -> Analysis:
    """Preprocess an RGB PIL image, run one forward with capture, return plain arrays.

    Each layer's ``gate`` is (G, h, w) float32 in (0, 1); ``before``/``after`` are SGE's input/output
    summed over each group's channels, (G, h, w) float32, unbounded.
    """
    # The crop alone: analyze_views normalises it (prepare() would normalise it a second time).
    view = center_crop_view(image, loaded.config.resize_size, loaded.config.input_size)
    return analyze_views(loaded, [view])[0]
