"""The per-batch function: a batch of crops through the model, its captures reduced to a ``Partial``.

Everything is derived from what ``GateRecorder`` captures per layer, each (B, G, H, W): the gate, the
group sums S1 = sum_c x and S2 = sum_c x^2 over the group's C/G channels, before and after SGE. With
n = C/G * H * W values per group and image: mean = sum_p S1 / n, E[x^2] = sum_p S2 / n, and the
population variance = E[x^2] - mean^2 (in float64); the vector length at p is sqrt(S2(p)).

The recorder keeps its tensors on the model's device (``keep_on_device=True``) and every reduction
(sums, maxima, histograms) runs there; only the reduced numbers, a few KB per layer, cross to the
host. The one exception is mask AUC (a rank statistic), computed on the host from the gates of the
images that have a mask.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..capture.preprocess import normalise
from ..capture.recorder import GateRecorder, LayerCapture
from ..metrics.localisation import gate_mask_auc
from ..models.factory import LoadedModel
from .summary import BINS, LENGTH_EDGES, LayerPartial, Partial

_edges_cache: dict[torch.device, torch.Tensor] = {}


def _edges(device: torch.device) -> torch.Tensor:
    if device not in _edges_cache:
        _edges_cache[device] = torch.as_tensor(LENGTH_EDGES, dtype=torch.float64, device=device)
    return _edges_cache[device]


def _histogram(lengths: torch.Tensor) -> torch.Tensor:
    """Counts (BINS,) of float64 ``lengths`` on LENGTH_EDGES, np.histogram's rule, larger values in the last bin."""
    index = torch.bucketize(lengths.reshape(-1), _edges(lengths.device), right=True) - 1
    return torch.bincount(index.clamp_(0, BINS - 1), minlength=BINS)


def _variance(s1: torch.Tensor, s2: torch.Tensor, n: int) -> torch.Tensor:
    """(B, G) population variance of each image's group values from the per-position sums (B, G, H, W)."""
    mean = s1.double().sum(dim=(2, 3)) / n
    return (s2.double().sum(dim=(2, 3)) / n - mean.square()).clamp_(min=0.0)


def reduce_layer(capture: LayerCapture, names: Sequence[str], masks: Sequence[np.ndarray | None],
                 k: int) -> LayerPartial:
    """One layer's captures of a batch (B images named ``names``) as a LayerPartial.

    ``masks``: per image the (S, S) bool mask of the crop, or None.
    """
    gate = capture.gate.float()
    b, g, h, w = gate.shape
    if capture.before is None or capture.after_sq is None:
        raise ValueError("dissection needs the activations: record with activations=True")
    n = capture.channels // g * h * w
    gate64 = gate.double()
    var_b = _variance(capture.before, capture.before_sq, n)
    var_a = _variance(capture.after, capture.after_sq, n)
    # Lengths in float32 (as LayerGates has them), binned in float64.
    len_b = capture.before_sq.float().sqrt()
    len_a = capture.after_sq.float().sqrt()
    best, where = len_a.reshape(b, g, h * w).max(dim=2)
    keep = min(k, b)
    if keep < b:  # only the batch's best k per group need cross to the host
        best_k, rank = best.topk(keep, dim=0)
        where_k, image_k = where.gather(0, rank), rank
    else:
        best_k, where_k, image_k = best, where, torch.arange(b, device=best.device)[:, None].expand(b, g)
    totals = torch.cat([gate64.sum(dim=(0, 2, 3)), gate64.square().sum(dim=(0, 2, 3)),
                        var_b.sum(0), var_b.square().sum(0), var_a.sum(0), var_a.square().sum(0)]).cpu().numpy()
    hist = torch.stack([_histogram(len_b.double()), _histogram(len_a.double())]).cpu().numpy()
    best_k, where_k, image_k = best_k.cpu().numpy(), where_k.cpu().numpy(), image_k.cpu().numpy()
    top = []
    for group in range(g):
        entries = [(float(best_k[j, group]), names[int(image_k[j, group])], int(where_k[j, group]) // w,
                    int(where_k[j, group]) % w) for j in range(best_k.shape[0])]
        top.append(sorted(entries, key=lambda e: (-e[0], e[1], e[2], e[3]))[:k])
    auc_sum, auc_count = np.zeros(g), np.zeros(g, np.int64)
    masked = [i for i, m in enumerate(masks) if m is not None]
    if masked:
        gates_host = gate[masked].cpu().numpy()
        for j, i in enumerate(masked):
            auc = gate_mask_auc(gates_host[j], masks[i])
            ok = np.isfinite(auc)
            auc_sum[ok] += auc[ok]
            auc_count[ok] += 1
    t = totals.reshape(6, g)
    return LayerPartial(g, capture.channels, h, w, k, b, t[0], t[1], t[2:4], t[4:6], hist[0], hist[1],
                        auc_sum, auc_count, top)


def reduce_captures(captures: dict[str, LayerCapture], layers: Sequence[str], names: Sequence[str],
                    masks: Sequence[np.ndarray | None], k: int) -> Partial:
    """Every named layer's captures of one batch as one Partial."""
    return Partial(k, {name: reduce_layer(captures[name], names, masks, k) for name in layers}, len(names))


def select_layers(recorder_layers: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The layers to summarise: all, or those named (in forward order); ValueError names unknown ones."""
    if not wanted:
        return list(recorder_layers)
    unknown = [w for w in wanted if w not in recorder_layers]
    if unknown:
        raise ValueError(f"unknown SGE layer(s) {', '.join(unknown)}; the model has {', '.join(recorder_layers)}")
    return [name for name in recorder_layers if name in set(wanted)]


def dissect_batch(loaded: LoadedModel, views: Sequence[np.ndarray], names: Sequence[str],
                  masks: Sequence[np.ndarray | None], k: int, layers: Sequence[str] | None = None) -> Partial:
    """The per-batch function: crops (each (S, S, 3) uint8) through the model, reduced on its device.

    ``masks``: per crop its (S, S) bool mask or None. ``layers``: names to summarise (default all).
    """
    if not views:
        return Partial(k)
    batch = torch.stack([normalise(v, loaded.config) for v in views])
    x = batch.to(loaded.device, loaded.dtype, non_blocking=True)
    with torch.inference_mode():
        with GateRecorder(loaded.model, keep_on_device=True) as recorder:
            loaded.model(x)
        chosen = select_layers(recorder.layer_names, layers)
        return reduce_captures(recorder.captures, chosen, names, masks, k)
