"""``explain``: for one image, the class evidence beside the gates, from one forward and one backward pass.

    ev = explain(loaded, open_image("assets/scene_01.png"))          # the top-1 class
    ev = explain(loaded, image, target="Sneaker")                     # or an index
    ev.cam                      # (S, S) float32 in [0, 1]: Grad-CAM on the last residual block
    ev.contributions[layer]     # (G,) float64, logit units: per-group gradient x output of each SGE layer
    ev.ablation[layer]          # target probability in [0, 1] with that layer's gate flattened
    ev.to_json()                # evidence.json

Definitions are in ``contributions`` (contribution), ``ablation`` (ablation) and ``gradcam`` (the CAM).
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..capture.analysis import Prediction, top_k
from ..capture.hooks import evaluating
from ..capture.preprocess import center_crop_view, normalise, seen_view
from ..domain import Judge, Verdict, verdict_json
from ..errors import SGEVizError
from ..models.config import ModelConfig
from ..models.loaded import LoadedModel
from ..resize import resize_maps
from .ablation import flat_gate_probabilities, flat_gate_probabilities_any, is_sge_resnet
from .contributions import SGETaps
from .gradcam import METHOD, cam_target, gradcam

if TYPE_CHECKING:
    from .faithfulness import Faithfulness


@dataclass
class Evidence:
    """The class evidence for one image; plain numpy inside, no torch objects.

    ``image``: (S, S, 3) uint8, the crop the network saw. ``cam``: (S, S) float32 in [0, 1].
    ``layers``: SGE layer names in forward order. ``gates[layer]``: (G, h, w) float32 in (0, 1).
    ``contributions[layer]``: (G,) float64 in logit units (any sign). ``ablation[layer]``: float in
    [0, 1], empty when ablations were not asked for. ``probabilities``: (classes,) float32 softmax.
    """

    image: np.ndarray
    target: Prediction
    cam: np.ndarray
    cam_layer: str
    layers: list[str]
    gates: dict[str, np.ndarray]
    contributions: dict[str, np.ndarray]
    ablation: dict[str, float] = field(default_factory=dict)
    probabilities: np.ndarray | None = None
    top: list[Prediction] = field(default_factory=list)
    model_name: str = ""
    seconds: float = 0.0  # the whole explain call
    # The out-of-domain verdict, or None when the model carries no measured signal.
    ood: Verdict | None = None
    # Deletion and insertion of the gates and the CAM (``faithfulness.evidence_faithfulness``), when asked for.
    faithfulness: Faithfulness | None = None

    def ranked(self, layer: str) -> list[int]:
        """The layer's groups by contribution, largest (most for the class) first."""
        return [int(g) for g in np.argsort(-self.contributions[layer], kind="stable")]

    def cam_correlation(self, layer: str) -> np.ndarray:
        """(G,) Pearson correlation in [-1, 1] of each group's gate map, upsampled bilinearly to the CAM's
        size, with the CAM; NaN for a flat gate or a flat CAM."""
        return pearson(resize_maps(self.gates[layer], *self.cam.shape), self.cam)

    def to_json(self) -> dict:
        """evidence.json: target, CAM layer, the out-of-domain verdict (null: the model has no signal), per
        layer the groups (ranked by contribution, largest first) and the ablated probability (null when not
        computed), and the ``faithfulness`` block when it was computed."""
        return {
            "target": {"index": self.target.index, "label": self.target.label,
                       "probability": self.target.probability},
            "cam": {"layer": self.cam_layer, "method": METHOD},
            "out_of_domain": verdict_json(self.ood),
            "layers": {
                layer: {
                    "groups": [{"group": g, "contribution": float(self.contributions[layer][g])}
                               for g in self.ranked(layer)],
                    "ablation": {"probability": self.ablation.get(layer)},
                }
                for layer in self.layers
            },
            **({"faithfulness": self.faithfulness.to_json()} if self.faithfulness is not None else {}),
        }


def pearson(maps: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Pearson correlation (G,) of each map of ``maps`` (G, H, W) with ``reference`` (H, W); NaN when
    either is constant."""
    a = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    b = np.asarray(reference, dtype=np.float64).ravel()
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean()
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (a @ b) / np.where(denominator > 0, denominator, 1.0), np.nan)


def resolve_target(config: ModelConfig, target: int | str | None) -> int | None:
    """A class index from an index (int or digits) or a class name (exact, then case-insensitive); None
    stays None (the top-1 class). SGEVizError naming the valid range otherwise."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return None
    n = config.num_classes
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        index = int(target)
    elif isinstance(target, str) and target.strip().lstrip("-").isdigit():
        index = int(target.strip())
    elif isinstance(target, str):
        name = target.strip()
        names = list(config.class_names)
        lowered = [c.lower() for c in names]
        if name in names:
            return names.index(name)
        if name.lower() in lowered:
            return lowered.index(name.lower())
        sample = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise SGEVizError(f"Unknown target class {name!r}: give a class index 0 to {n - 1} or a class name "
                          f"of this model ({sample}).")
    else:
        raise SGEVizError(f"Target {target!r} is neither a class index nor a class name.")
    if not 0 <= index < n:
        raise SGEVizError(f"Target class {index} does not exist: this model has classes 0 to {n - 1}.")
    return index


@contextlib.contextmanager
def _restored(model: nn.Module):
    """Put back what a Grad-CAM run changes (it calls eval() and zero_grad(), and its backward fills the
    .grad of parameters that require grad): training flags and ``.grad``. A loaded model (eval mode, frozen
    parameters without gradients) has nothing to put back, and pays only for the look."""
    training = [m for m in model.modules() if m.training]
    grads = [(p, p.grad) for p in model.parameters() if p.requires_grad or p.grad is not None]
    try:
        yield
    finally:
        for m in training:
            m.training = True
        for p, grad in grads:
            p.grad = grad


def explain(loaded: LoadedModel, image: Image.Image | np.ndarray, target: int | str | None = None,
            ablation: bool = True) -> Evidence:
    """The class evidence for one image, from one forward and one backward pass (+ the ablations).

    ``image``: an RGB PIL image (resized and centre-cropped like ``analyze``) or an already cropped view
    (S, S, 3) uint8. ``target``: class index or name; None = the top-1 class. ``ablation=False`` skips
    the per-layer ablations (``Evidence.ablation`` stays empty). The model is left as it was: it runs in
    eval mode, gradients are enabled only on activations inside this call (the parameters keep
    ``requires_grad``; their ``.grad`` and training flags are restored), and concurrent calls on one
    model do not see each other's tensors. Raises SGEVizError for an unknown target.
    """
    config, model = loaded.config, loaded.model
    if not config.classifies:
        raise SGEVizError(f"Class evidence needs a class score, and {loaded.name} gives none (gates only): use "
                          "analyze or dissect to see its gates.")
    start = time.perf_counter()
    view = image if isinstance(image, np.ndarray) else center_crop_view(image, config.resize_size,
                                                                        config.input_size)
    index = resolve_target(config, target)
    x = normalise(view, config).unsqueeze(0).to(loaded.device, loaded.dtype)
    cam_layer, block = cam_target(model, config.cam_layer)
    patterns = config.sge_layers
    judge = Judge(getattr(loaded, "ood", None))
    me = threading.get_ident()  # the model may serve other threads: read this call's forward only
    with _restored(model), evaluating(model), torch.inference_mode(False), torch.enable_grad():
        with SGETaps(model, keep=ablation, patterns=patterns) as taps, \
                judge.watching(model, active=lambda: threading.get_ident() == me):
            cam, logits = gradcam(model, x, index, block)
        probabilities = logits.float().softmax(dim=1)[0].cpu()
        if index is None:
            index = int(probabilities.argmax())
        if not ablation:
            flat = {}
        elif is_sge_resnet(model, taps.layers):
            flat = flat_gate_probabilities(model, taps.layers, index)
        else:
            flat = flat_gate_probabilities_any(model, x, taps.layers, taps._modules, index)
    result = Evidence(
        image=seen_view(view, config),
        target=Prediction(index, config.class_name(index), float(probabilities[index])),
        cam=cam,
        cam_layer=cam_layer,
        layers=[k.name for k in taps.layers],
        gates=taps.gates(),
        contributions=taps.contributions(),
        ablation=flat,
        probabilities=probabilities.numpy(),
        top=top_k(probabilities, config),
        model_name=loaded.name,
        ood=judge.verdicts(1)[0],
    )
    result.seconds = time.perf_counter() - start
    return result
