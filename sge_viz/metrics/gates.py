"""Numbers about gates: per-group statistics, layer depth profile, and stats.json.

numpy only. Definitions, per group g of a gate map a_g (h, w), over its h*w positions:

- mean, std, min, max: spatial statistics of the gate; std is the population
  one (ddof=0), i.e. how far the gate varies across the image.
- enhanced_share: share of positions where the gate is above the group's own
  spatial mean ("enhanced"); the rest are "suppressed" (at or below the mean).
- selectivity: std / mean, the coefficient of variation of the gate. 0 for a
  flat gate (the group treats every position alike); higher means the group
  singles out a few positions. Gates are sigmoid outputs, so mean > 0.

All reductions run in float64 so the same numbers come out wherever they are
recomputed from the float32 arrays in gates.npz.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..domain.verdict import verdict_json
from .localisation import gate_mask_auc

if TYPE_CHECKING:  # only for type hints: the analysis result holds plain numpy arrays
    from ..capture.analysis import Analysis


@dataclass
class GroupStats:
    """Per-group statistics of one layer's gate, each an array of shape (G,)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    enhanced_share: np.ndarray
    selectivity: np.ndarray


def _check_gate(gate: np.ndarray) -> np.ndarray:
    gate = np.asarray(gate)
    if gate.ndim != 3 or gate.shape[1] * gate.shape[2] == 0:
        raise ValueError(f"a gate must be (G, h, w) with at least one position, got {gate.shape}")
    return gate


def group_stats(gate: np.ndarray) -> GroupStats:
    """Statistics of each group's gate map (G, h, w); see the module docstring for definitions."""
    flat, mean, std = _spread(gate)
    enhanced = (flat > mean[:, None]).mean(axis=1)
    return GroupStats(mean, std, flat.min(axis=1), flat.max(axis=1), enhanced, _selectivity(mean, std))


def selectivity_order(gate: np.ndarray) -> list[int]:
    """Group indices, most selective first (ties keep index order)."""
    _, mean, std = _spread(gate)  # only what selectivity needs: the page orders every mosaic by it
    return [int(g) for g in np.argsort(-_selectivity(mean, std), kind="stable")]


def _spread(gate: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's positions (G, h*w) in float64, their mean and population std (G,)."""
    flat = _check_gate(gate).reshape(gate.shape[0], -1).astype(np.float64)
    return flat, flat.mean(axis=1), flat.std(axis=1)


def _selectivity(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, std / mean, 0.0)


def depth_profile(analysis: Analysis) -> list[dict]:
    """One row per SGE layer, input to output: how the gates change with depth.

    mean: the gate's mean over groups and positions; spread: mean over groups of
    the spatial std; enhanced_share: mean over groups of the enhanced share.
    """
    rows = []
    for layer in analysis.layers:
        s = group_stats(layer.gate)
        groups, height, width = layer.gate.shape
        rows.append({
            "name": layer.name, "groups": int(groups), "height": int(height), "width": int(width),
            "mean": float(s.mean.mean()), "spread": float(s.std.mean()),
            "enhanced_share": float(s.enhanced_share.mean()),
        })
    return rows


def histogram(gate: np.ndarray, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of all gate values over [0, 1] (the sigmoid's range, so layers compare)."""
    return np.histogram(np.asarray(gate, dtype=np.float64).ravel(), bins=bins, range=(0.0, 1.0))


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON-safe list: NaN/Inf (e.g. an AUC with an empty class) become null."""
    array = np.asarray(values, dtype=np.float64).ravel()
    out = array.tolist()  # one C call; only a non-finite value needs the per-element pass
    return out if np.isfinite(array).all() else [v if math.isfinite(v) else None for v in out]


def analysis_stats(analysis: Analysis, mask: np.ndarray | None = None) -> dict:
    """The JSON-ready summary written as stats.json.

    ``mask`` (optional, bool, the size of ``analysis.image``) marks the object;
    each group then also gets ``mask_auc``: the ROC-AUC of its upsampled gate
    against the mask (1 = the gate is higher on the object than anywhere else).
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != analysis.image.shape[:2]:
            raise ValueError(f"mask {mask.shape} does not match the image {analysis.image.shape[:2]}")
    layers = {}
    for layer in analysis.layers:
        s = group_stats(layer.gate)
        groups, height, width = layer.gate.shape
        entry = {
            "groups": int(groups), "height": int(height), "width": int(width),
            "mean": _floats(s.mean), "std": _floats(s.std), "min": _floats(s.min), "max": _floats(s.max),
            "enhanced_share": _floats(s.enhanced_share), "selectivity": _floats(s.selectivity),
        }
        if mask is not None:
            entry["mask_auc"] = _floats(gate_mask_auc(layer.gate, mask))
        layers[layer.name] = entry
    height, width = analysis.image.shape[:2]
    out = {
        "model": analysis.model_name,
        "image_size": [int(height), int(width)],
        "predictions": [{"index": int(p.index), "label": p.label, "probability": float(p.probability)}
                        for p in analysis.predictions],
    }
    # the true class of a shipped example scene (sge_viz.io.examples.file_true_class); absent when unknown
    if getattr(analysis, "true_class", None):
        out["true_class"] = analysis.true_class
    out.update({
        # sge_viz.domain.Verdict (score, value, threshold, out_of_domain); null: no signal measured
        "out_of_domain": verdict_json(getattr(analysis, "ood", None)),
        # how the network was built, SGE layers skipped (not spatial group gates) or not captured
        "notes": list(getattr(analysis, "notes", [])),
        "layers": layers,
    })
    other = getattr(analysis, "other_gates", {})
    if other:  # gates over 1-D and 3-D inputs: per group over all positions
        out["other_layers"] = {
            name: {"groups": int(g.shape[0]), "shape": [int(d) for d in g.shape[1:]],
                   "mean": _floats(g.reshape(len(g), -1).mean(1)), "std": _floats(g.reshape(len(g), -1).std(1)),
                   "min": _floats(g.reshape(len(g), -1).min(1)), "max": _floats(g.reshape(len(g), -1).max(1))}
            for name, g in other.items()}
    return out
