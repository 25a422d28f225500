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

import sys
from collections.abc import Sequence

import numpy as np
import torch

from ..capture.preprocess import normalise
from ..capture.recorder import GateRecorder, LayerCapture
from ..metrics.localisation import gate_mask_auc
from ..models.factory import LoadedModel
from .summary import BINS, LENGTH_EDGES, LayerPartial, Partial

# Histogram bins without a binary search: the top 16 bits of a non-negative float32 (exponent and 8
# mantissa bits, cells 0.4% wide) index a table of the bin each cell starts in; bins are 12% wide, so
# a cell holds at most one edge and one comparison with the next edge finishes the job. Edges are
# compared as the smallest float32 >= each float64 edge, which gives exactly np.histogram's bins for
# float32 lengths.
_EDGES_UP = LENGTH_EDGES.astype(np.float32)
_EDGES_UP = np.where(_EDGES_UP.astype(np.float64) < LENGTH_EDGES, np.nextafter(_EDGES_UP, np.float32(np.inf)),
                     _EDGES_UP).astype(np.float32)  # the smallest float32 >= each edge
# (BINS,): where bin i + 1 starts; NaN after the last bin (no comparison with NaN is true).
_NEXT_EDGE = np.append(_EDGES_UP[1:BINS], np.float32(np.nan)).astype(np.float32)
_CELL_START = (np.arange(1 << 16, dtype=np.uint32) << np.uint32(15)).view(np.float32)
_CELL_BIN = np.clip(np.searchsorted(_EDGES_UP, _CELL_START, side="right") - 1, 0, BINS - 1)
_CELL_BIN[np.isnan(_CELL_START)] = BINS - 1
_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


# On the CPU: the top 16 bits (exponent and 7 mantissa bits, cells 0.8% wide) of each float32, read in
# place as uint16, are counted with one bincount; cells are mapped to bins by table, and the few values
# in a cell that holds an edge and lie at or past it move one bin up.
_CELLS = np.arange(1 << 16, dtype=np.uint32)


def _bin_of(values: np.ndarray) -> np.ndarray:
    out = np.clip(np.searchsorted(_EDGES_UP, values, side="right") - 1, 0, BINS - 1)
    out[np.isnan(values)] = BINS - 1
    return out


_HI_FIRST = _bin_of((_CELLS << np.uint32(16)).view(np.float32))
_HI_LAST = _bin_of(((_CELLS << np.uint32(16)) | np.uint32(0xFFFF)).view(np.float32))
_HI_FIRST[_CELLS >= 0x8000] = _HI_LAST[_CELLS >= 0x8000] = 0  # negative: only -0.0 occurs, bin 0
_HI_SPLIT = np.full(1 << 16, np.nan, np.float32)  # the edge inside the cell, NaN when none
_HI_SPLIT[_HI_LAST > _HI_FIRST] = _EDGES_UP[_HI_LAST[_HI_LAST > _HI_FIRST]]


def _bins_numpy(lengths: np.ndarray) -> np.ndarray:
    """Counts (BINS,) of float32 ``lengths`` (1-D, contiguous), the same as ``_bins_torch``."""
    key = lengths.view(np.uint16)[1::2] if sys.byteorder == "little" else (lengths.view(np.uint32) >> 16)
    counts = np.bincount(_HI_FIRST, weights=np.bincount(key, minlength=1 << 16), minlength=BINS).astype(np.int64)
    moved = np.bincount(_HI_FIRST[key[lengths >= _HI_SPLIT[key]]], minlength=BINS)
    counts -= moved
    counts[1:] += moved[:-1]
    return counts


def _histogram(lengths: torch.Tensor) -> torch.Tensor:
    """Counts (BINS,) int64 of float32 ``lengths`` (>= 0, any shape) on LENGTH_EDGES, with np.histogram's
    rule on the float32 values; lengths past the last edge count in the last bin. On the lengths' device."""
    lengths = lengths.float().contiguous().reshape(-1)
    if lengths.device.type == "cpu":  # numpy's take and bincount are several times faster than torch's on a CPU
        return torch.from_numpy(_bins_numpy(lengths.numpy()))
    return _bins_torch(lengths)


def _bins_torch(lengths: torch.Tensor) -> torch.Tensor:
    """The same bins as ``_bins_numpy`` with torch ops, on the lengths' device (GPUs)."""
    if lengths.device not in _tables:
        _tables[lengths.device] = (torch.as_tensor(_CELL_BIN, device=lengths.device),
                                   torch.as_tensor(_NEXT_EDGE, device=lengths.device))
    cell_bin, next_edge = _tables[lengths.device]
    index = cell_bin[(lengths.view(torch.int32) >> 15) & 0xFFFF]
    index += lengths >= next_edge[index]
    return torch.bincount(index, minlength=BINS)


def _variance(s1: torch.Tensor, s2: torch.Tensor, n: int) -> torch.Tensor:
    """(B, G) population variance of each image's group values from the per-position sums (B, G, H, W):
    spatial sums in float32, the rest in float64."""
    mean = s1.sum(dim=(2, 3)).double() / n
    return (s2.sum(dim=(2, 3)).double() / n - mean.square()).clamp_(min=0.0)


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
    var_b = _variance(capture.before, capture.before_sq, n)
    var_a = _variance(capture.after, capture.after_sq, n)
    after_sq = capture.after_sq.float()
    best, where = after_sq.reshape(b, g, h * w).max(dim=2)
    best = best.sqrt()  # the longest vector: sqrt is monotonic, so only the maxima need it
    keep = min(k, b)
    if keep < b:  # only the batch's best k per group need cross to the host
        best_k, rank = best.topk(keep, dim=0)
        where_k, image_k = where.gather(0, rank), rank
    else:
        best_k, where_k, image_k = best, where, torch.arange(b, device=best.device)[:, None].expand(b, g)
    gate_sums = gate.sum(dim=(2, 3)).double().sum(0)  # spatial sums in float32, over images in float64
    gate_sq = (gate * gate).sum(dim=(2, 3)).double().sum(0)
    totals = torch.cat([gate_sums, gate_sq,
                        var_b.sum(0), var_b.square().sum(0), var_a.sum(0), var_a.square().sum(0)]).cpu().numpy()
    # Lengths in float32, as LayerGates has them.
    hist = torch.stack([_histogram(capture.before_sq.float().sqrt()), _histogram(after_sq.sqrt())]).cpu().numpy()
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
