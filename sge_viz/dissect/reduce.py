"""The per-batch function: a batch of crops through the model, its captures reduced to a ``Partial``.

Everything is derived from what ``GateRecorder`` captures per layer, each (B, G, H, W): the gate, the
group sums S1 = sum_c x and S2 = sum_c x^2 over the group's C/G channels, before and after SGE. With
n = C/G * H * W values per group and image: mean = sum_p S1 / n, E[x^2] = sum_p S2 / n, and the
population variance = E[x^2] - mean^2 (in float64); the vector length at p is sqrt(S2(p)). No square
root is taken per position: the length histograms bin S2 on the squared edges (summary.SQUARED_EDGES)
and a score is the float32 square root of a maximum of S2.

The recorder keeps its tensors on the model's device (``keep_on_device=True``) and every reduction
(sums, maxima, histograms) runs there; only the reduced numbers cross to the host: per layer the
totals and histograms, a few KB, and each image's maximum and its position per group (B x G), which
the host sorts into the top lists. The one exception is mask AUC (a rank statistic), computed on the
host from the gates of the images that have a mask.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..capture.preprocess import normalise_batch
from ..capture.recorder import GateRecorder, LayerCapture
from ..metrics.localisation import gate_mask_auc
from ..models.factory import LoadedModel
from .summary import BINS, SQUARED_EDGES, LayerPartial, Partial

# Histograms without comparisons: every squared edge is a float32 whose low 16 bits are zero, so the
# cell of float32 values sharing their top 16 bits (sign, exponent, 7 mantissa bits) lies wholly in one
# bin, and counting the cells counts the bins exactly. Bin i holds the cells from edge i's up to edge
# i+1's; the last runs to the end, inf and NaN included. The sign bit is ignored: a sum of squares is
# >= 0 (only -0.0 could carry it).
_BIN_START = (SQUARED_EDGES[:BINS].view(np.uint32) >> 16).astype(np.intp)  # (BINS,) first cell of each bin
_CELL_BIN = np.repeat(np.arange(BINS), np.diff(np.append(_BIN_START, 1 << 15)))  # (2^15,) bin of each cell
_CHUNK = 1 << 18  # values per bincount: its intp key buffer (2 MB) stays in cache
_tables: dict[torch.device, torch.Tensor] = {}


def _bins_numpy(squared: np.ndarray) -> np.ndarray:
    """Counts (BINS,) int64 of float32 ``squared`` (1-D, contiguous), the same as ``_bins_torch``."""
    bits = squared.view(np.uint32)
    cells = np.zeros(1 << 16, np.intp)
    # bincount copies any key that is not intp to a new intp array (8 bytes a value): keys are shifted
    # straight into a small intp buffer instead, a chunk at a time (~1.4x faster than one bincount).
    key = np.empty(min(bits.size, _CHUNK), np.intp)
    for start in range(0, bits.size, _CHUNK):
        part = bits[start:start + _CHUNK]
        np.right_shift(part, 16, out=key[:part.size])
        cells += np.bincount(key[:part.size], minlength=1 << 16)
    return np.add.reduceat(cells[:1 << 15] + cells[1 << 15:], _BIN_START).astype(np.int64)


def _histogram(squared: torch.Tensor) -> torch.Tensor:
    """Counts (BINS,) int64 of float32 squared lengths (>= 0, any shape) on SQUARED_EDGES: bins [E_i, E_i+1),
    the last also counting larger values, inf and NaN. On the values' device."""
    squared = squared.float().contiguous().reshape(-1)
    if squared.device.type == "cpu":  # numpy's bincount is several times faster than torch's on a CPU
        return torch.from_numpy(_bins_numpy(squared.numpy()))
    return _bins_torch(squared)


def _bins_torch(squared: torch.Tensor) -> torch.Tensor:
    """The same counts as ``_bins_numpy`` with torch ops, on the values' device (GPUs): the cell table is
    looked up there and the bins counted with one bincount."""
    if squared.device not in _tables:
        _tables[squared.device] = torch.as_tensor(_CELL_BIN, device=squared.device)
    cell = (squared.view(torch.int32) >> 16) & 0x7FFF  # the top 16 bits, sign dropped
    return torch.bincount(_tables[squared.device][cell], minlength=BINS)


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
    best, where = _max_positions(after_sq.reshape(b, g, h * w))
    gate_sums = gate.sum(dim=(2, 3)).double().sum(0)  # spatial sums in float32, over images in float64
    gate_sq = (gate * gate).sum(dim=(2, 3)).double().sum(0)
    totals = torch.cat([gate_sums, gate_sq,
                        var_b.sum(0), var_b.square().sum(0), var_a.sum(0), var_a.square().sum(0)]).cpu().numpy()
    # Squared lengths on squared edges: the same bins as the lengths on LENGTH_EDGES, without a sqrt each.
    hist = torch.stack([_histogram(capture.before_sq), _histogram(after_sq)]).cpu().numpy()
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
    # The score is the longest vector: sqrt is monotonic, so only the maxima need it. numpy's float32 sqrt
    # is correctly rounded, as analyze()'s lengths are (torch's CPU one is at times 1 ulp off).
    return LayerPartial(g, capture.channels, h, w, k, b, t[0], t[1], t[2:4], t[4:6], hist[0], hist[1],
                        auc_sum, auc_count, _top_lists(np.sqrt(best), where, w, names, k))


def _max_positions(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The maxima (B, G) of ``values`` (B, G, P) over P and their first positions (B, G) int64, on the host."""
    if values.device.type == "cpu":  # numpy's argmax is several times faster than torch's max(dim) on a CPU
        where = values.numpy().argmax(axis=2)
        return np.take_along_axis(values.numpy(), where[..., None], 2)[..., 0], where
    best, where = values.max(dim=2)
    return best.cpu().numpy(), where.cpu().numpy()


def _top_lists(scores: np.ndarray, where: np.ndarray, width: int, names: Sequence[str],
               k: int) -> list[list[tuple[float, str, int, int]]]:
    """Per group its best k (score, image, row, col) of the batch, in the order of summary's _top_key.

    ``scores``, ``where``: (B, G) each image's score and the flat position of it in rows of ``width``.
    Sorted on the host, all B at once, so that ties at the k-th place go by image name.
    """
    b, g = scores.shape
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    image = np.broadcast_to(np.arange(b)[:, None], (b, g))
    rows, cols = where // width, where % width
    order = np.lexsort((cols, rows, np.array([rank[n] for n in names])[image], -scores), axis=0)[:k]  # (k', G)

    def by_group(a: np.ndarray) -> list[list]:
        return np.take_along_axis(a, order, 0).T.tolist()

    return [list(zip(s, [names[i] for i in im], r, c))
            for s, im, r, c in zip(by_group(scores), by_group(image), by_group(rows), by_group(cols))]


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
    x = normalise_batch(views, loaded.config, loaded.device, loaded.dtype)
    with torch.inference_mode():
        with GateRecorder(loaded.model, keep_on_device=True) as recorder:
            loaded.model(x)
        chosen = select_layers(recorder.layer_names, layers)
        return reduce_captures(recorder.captures, chosen, names, masks, k)
