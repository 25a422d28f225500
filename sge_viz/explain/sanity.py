"""Sanity checks for gates (Adebayo et al. 2018): does a gate depend on the trained weights, and on the class?

**Cascading randomisation.** The model's top-level parts that hold parameters are re-initialised one after
another from the head to the stem (for an SGE-ResNet: fc, layer4, ..., layer1, bn1, conv1); after each step
every SGE layer's mean gate (the mean over its groups, (h, w)) is compared with the trained model's on the same
images: **Spearman** rank correlation over the positions and **SSIM** (scikit-image, data range 1) of the two
maps upsampled to the input size. Re-initialising = each module's own ``reset_parameters`` (PyTorch's
initialisation; BatchNorm's running statistics reset too), with a fixed seed. SGE's own parameters (its
per-group scale and shift) are either **kept** (trained values) or **redrawn** (N(0, 1)); both are reported.
A gate that stays similar after its own stage is randomised comes partly from the image's structure rather
than from what the network learned.

**Class sensitivity.** For every image, the map for the top-1 and the top-2 class: the layer's mean gate
(a forward quantity: the same for every class), the gate of the group contributing most to each class, and
Grad-CAM, compared by Spearman. A map that does not change with the class is not evidence for a class.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ..capture.analysis import analyze_views
from ..capture.recorder import find_sge_layers, first_path
from ..errors import SGEVizError
from ..models.loaded import LoadedModel
from ..resize import resize_maps
from .evidence import explain

VARIANTS = ("kept", "redrawn")  # SGE's own parameters after a step: trained values, or drawn from N(0, 1)
SURVIVES = 0.5  # a mean Spearman at or above this after its own stage is randomised: "partly image structure"


@dataclass
class Step:
    """One cascade step: ``parts`` re-initialised so far (head first); per variant and SGE layer, the mean
    gate's Spearman and SSIM with the trained model's, each (images,) float64."""

    parts: list[str]
    spearman: dict[str, dict[str, np.ndarray]]
    ssim: dict[str, dict[str, np.ndarray]]


@dataclass
class Sanity:
    """The sanity report of one model on ``images`` images (see the module docstring)."""

    layers: list[str]
    stage_of: dict[str, str]  # SGE layer -> the top-level part that holds it
    steps: list[Step]
    images: int
    # Modules re-initialisation could not reach (parameters of their own, no reset_parameters): they stayed trained.
    not_reset: list[str] = field(default_factory=list)
    class_sensitivity: dict[str, np.ndarray] = field(default_factory=dict)  # map -> (images,) Spearman top-1 vs top-2

    def own_stage(self, layer: str) -> Step:
        """The first step that has re-initialised ``layer``'s own part."""
        return next(s for s in self.steps if self.stage_of[layer] in s.parts)

    def summary(self) -> list[dict]:
        """Per SGE layer: mean Spearman and SSIM after its own part and after every part, per variant."""
        rows = []
        last = self.steps[-1]
        for layer in self.layers:
            own = self.own_stage(layer)
            row = {"layer": layer, "stage": self.stage_of[layer]}
            for variant in VARIANTS:
                row[f"own_{variant}_spearman"] = _mean(own.spearman[variant][layer])
                row[f"own_{variant}_ssim"] = _mean(own.ssim[variant][layer])
                row[f"all_{variant}_spearman"] = _mean(last.spearman[variant][layer])
                row[f"all_{variant}_ssim"] = _mean(last.ssim[variant][layer])
            rows.append(row)
        return rows

    def findings(self) -> list[str]:
        """What follows, in words."""
        out = []
        if self.not_reset:
            out.append(f"Not re-initialised (no reset_parameters; their trained values stayed): "
                       f"{', '.join(self.not_reset)}. Read the cascade with that in mind.")
        surviving = [r for r in self.summary() if r["own_kept_spearman"] >= SURVIVES]
        if surviving:
            names = ", ".join(f"{r['layer']} ({r['own_kept_spearman']:.2f})" for r in surviving)
            out.append(f"Partly image structure: the mean gate of {names} keeps a Spearman >= {SURVIVES} with the "
                       "trained one after its own stage is re-initialised (SGE's parameters kept), so part of what "
                       "it shows comes from the image, not from what the network learned.")
        fading = [r["layer"] for r in self.summary() if r["own_kept_spearman"] < SURVIVES]
        if fading:
            out.append(f"Learned: the mean gate of {', '.join(fading)} changes once its own stage is re-initialised "
                       f"(Spearman < {SURVIVES}).")
        mean_gate = self.class_sensitivity.get("mean gate")
        if mean_gate is not None and len(mean_gate):
            cam = _mean(self.class_sensitivity.get("Grad-CAM", np.array([])))
            out.append(f"Not class evidence: a gate is the same whichever class is explained (Spearman "
                       f"{_mean(mean_gate):.3f} between the top-1 and top-2 class; Grad-CAM {cam:.2f}). For what "
                       "carries a class, read the contributions and Grad-CAM.")
        return out

    def to_json(self) -> dict:
        """sanity.json: every step with its per-image values, the summary, class sensitivity and findings."""
        return {
            "images": self.images, "layers": self.layers, "stage_of": self.stage_of, "not_reset": self.not_reset,
            "definition": "Spearman over positions / SSIM at the input size between the trained and the "
                          "randomised model's mean gate; cascade from the head to the stem",
            "steps": [{"parts": s.parts,
                       **{f"{kind}_{variant}": {layer: [float(v) for v in values[variant][layer]]
                                                for layer in self.layers}
                          for kind, values in (("spearman", s.spearman), ("ssim", s.ssim)) for variant in VARIANTS}}
                      for s in self.steps],
            "summary": self.summary(),
            "class_sensitivity": {k: {"mean": _mean(v), "values": [float(x) for x in v]}
                                  for k, v in self.class_sensitivity.items()},
            "findings": self.findings(),
        }


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if values.size and np.isfinite(values).any() else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' values; NaN when either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ssim(a: np.ndarray, b: np.ndarray, height: int, width: int) -> float:
    """SSIM (scikit-image, data range 1) of two gate maps in [0, 1] upsampled bilinearly to (height, width)."""
    from skimage.metrics import structural_similarity

    a, b = resize_maps(np.stack([a, b]), height, width)
    side = min(height, width)
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        return float("nan")
    return float(structural_similarity(a, b, data_range=1.0, win_size=window))


def cascade_parts(model: nn.Module) -> list[str]:
    """The model's top-level parts that hold parameters, head first (the order they are re-initialised)."""
    parts = [name for name, child in model.named_children() if any(True for _ in child.parameters())]
    if not parts:
        raise SGEVizError("This model has no parts with parameters to re-initialise.")
    return parts[::-1]


def reinitialise(part: nn.Module, sge: Sequence[nn.Module], variant: str, generator: torch.Generator) -> list[str]:
    """Each module's own ``reset_parameters`` (and BatchNorm's running statistics) inside ``part``; the SGE
    modules' own parameters then put back (``kept``) or drawn from N(0, 1) (``redrawn``). Returns the paths
    (inside ``part``; "" for ``part`` itself) of the other modules that hold parameters of their own but have no
    ``reset_parameters``: those keep their trained values, and the report says so."""
    sge_ids = {id(m) for m in sge}
    saved = {id(m): [p.detach().clone() for p in m.parameters(recurse=False)] for m in part.modules()
             if id(m) in sge_ids}
    with torch.no_grad():
        kept_trained = []
        for path, m in part.named_modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
            elif isinstance(m, nn.modules.batchnorm._NormBase):
                m.reset_running_stats()
            elif id(m) not in sge_ids and any(True for _ in m.parameters(recurse=False)):
                kept_trained.append(path)
        for m in part.modules():
            if id(m) not in saved:
                continue
            for p, old in zip(m.parameters(recurse=False), saved[id(m)]):
                p.copy_(old if variant == "kept" else torch.randn(p.shape, generator=generator).to(p))
    return kept_trained


def _mean_gates(loaded: LoadedModel, views: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    analyses = analyze_views(loaded, list(views), activations=False)
    return {layer.name: [a.layer(layer.name).gate.mean(axis=0) for a in analyses] for layer in analyses[0].layers}


def sanity(loaded: LoadedModel, views: Sequence[np.ndarray], seed: int = 0, class_sensitivity: bool = True,
           progress: Callable[[str], None] | None = None) -> Sanity:
    """The cascading randomisation and class-sensitivity report on ``views`` (each (H, W, 3) uint8 at the
    model's input size); the model itself is left untouched (the cascade runs on copies). ``progress``
    receives a line per step."""
    if not views:
        raise SGEVizError("The sanity check needs at least one image.")
    say = progress or (lambda _line: None)
    height, width = views[0].shape[:2]
    plain = dataclasses.replace(loaded, ood=None)  # no out-of-domain verdicts needed here
    trained = _mean_gates(plain, views)
    layers = list(trained)
    parts = cascade_parts(loaded.model)
    stage_of = {layer: first_path(layer).split(".")[0] for layer in layers}
    copies = {variant: copy.deepcopy(loaded.model) for variant in VARIANTS}
    patterns = loaded.config.sge_layers  # the SGE modules the user named, too
    steps, not_reset = [], []
    for i, part in enumerate(parts):
        spearmans, ssims = {}, {}
        for variant, model in copies.items():
            generator = torch.Generator().manual_seed(seed * 1000 + i)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed * 1000 + i)
                missed = reinitialise(model.get_submodule(part), [m for _, m in find_sge_layers(model, patterns)],
                                      variant, generator)
            for path in missed:
                name = f"{part}.{path}" if path else part
                if name not in not_reset:
                    not_reset.append(name)
            gates = _mean_gates(dataclasses.replace(plain, model=model), views)
            spearmans[variant] = {layer: np.array([spearman(a, b) for a, b in zip(trained[layer], gates[layer])])
                                  for layer in layers}
            ssims[variant] = {layer: np.array([ssim(a, b, height, width) for a, b in zip(trained[layer], gates[layer])])
                              for layer in layers}
        steps.append(Step(parts[: i + 1], spearmans, ssims))
        say(f"re-initialised {', '.join(parts[: i + 1])}")
    report = Sanity(layers, stage_of, steps, len(views), not_reset)
    if class_sensitivity and loaded.config.classifies:
        report.class_sensitivity = class_maps(loaded, views)
        say("class sensitivity: top-1 vs top-2 class")
    return report


def class_maps(loaded: LoadedModel, views: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per image, Spearman between the top-1 and the top-2 class's map: the last SGE layer's mean gate, the
    gate of its group contributing most to each class, and Grad-CAM."""
    found: dict[str, list[float]] = {"mean gate": [], "top-contribution group": [], "Grad-CAM": []}
    for view in views:
        first = explain(loaded, view, ablation=False)
        second_class = int(np.argsort(-first.probabilities, kind="stable")[1])
        second = explain(loaded, view, target=second_class, ablation=False)
        layer = first.layers[-1]
        found["mean gate"].append(spearman(first.gates[layer].mean(0), second.gates[layer].mean(0)))
        found["top-contribution group"].append(spearman(first.gates[layer][first.ranked(layer)[0]],
                                                        second.gates[layer][second.ranked(layer)[0]]))
        found["Grad-CAM"].append(spearman(first.cam, second.cam))
    return {k: np.array(v) for k, v in found.items()}
