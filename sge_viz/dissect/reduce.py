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


def _bin_keys(squared: torch.Tensor) -> torch.Tensor:
    """The bin (int32) of every float32 value of ``squared`` (1-D), on its device: the cell table looked up."""
    if squared.device not in _tables:
        _tables[squared.device] = torch.as_tensor(_CELL_BIN, dtype=torch.int32, device=squared.device)
    cell = (squared.view(torch.int32) >> 16) & 0x7FFF  # the top 16 bits, sign dropped
    return _tables[squared.device][cell]


def _bins_torch(squared: torch.Tensor) -> torch.Tensor:
    """The same counts as ``_bins_numpy`` with torch ops, on the values' device (GPUs)."""
    return torch.bincount(_bin_keys(squared), minlength=BINS)


def _histograms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Counts (len(tensors), BINS) int64 of each tensor's squared lengths (as ``_histogram``), on their device.

    On a GPU all are counted in one bincount, each tensor's keys shifted by its row: torch's bincount
    reads the largest key back to the host, so one call per tensor would stall the device each time.
    """
    if not tensors:
        return torch.zeros(0, BINS, dtype=torch.int64)
    if tensors[0].device.type == "cpu":
        return torch.stack([_histogram(t) for t in tensors])
    return _histograms_torch(tensors)


def _histograms_torch(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``_histograms`` with one torch bincount, on the tensors' device (the GPU path; also runs on a CPU)."""
    keys = torch.cat([_bin_keys(t.float().contiguous().reshape(-1)) + row * BINS for row, t in enumerate(tensors)])
    return torch.bincount(keys, minlength=len(tensors) * BINS).reshape(len(tensors), BINS)


def _variance(s1: torch.Tensor, s2: torch.Tensor, n: int) -> torch.Tensor:
    """(B, G) population variance of each image's group values from the per-position sums (B, G, H, W):
    spatial sums in float32, the rest in float64."""
    mean = s1.sum(dim=(2, 3)).double() / n
    return (s2.sum(dim=(2, 3)).double() / n - mean.square()).clamp_(min=0.0)


def _layer_numbers(capture: LayerCapture) -> torch.Tensor:
    """One layer's reductions as one flat float64 tensor on the capture's device: the totals (6, G) (gate
    sum and sum of squares; sum and sum of squares over images of the variances before and after), then
    each image's largest squared after-SGE length (B, G) and its flat position (B, G)."""
    gate = capture.gate.float()
    b, g, h, w = gate.shape
    n = capture.channels // g * h * w
    var_b = _variance(capture.before, capture.before_sq, n)
    var_a = _variance(capture.after, capture.after_sq, n)
    best, where = _max_positions(capture.after_sq.float().reshape(b, g, h * w))
    gate_sums = gate.sum(dim=(2, 3)).double().sum(0)  # spatial sums in float32, over images in float64
    gate_sq = (gate * gate).sum(dim=(2, 3)).double().sum(0)
    return torch.cat([gate_sums, gate_sq, var_b.sum(0), var_b.square().sum(0), var_a.sum(0), var_a.square().sum(0),
                      best.double().reshape(-1), where.double().reshape(-1)])


def _layer_partial(capture: LayerCapture, numbers: np.ndarray, hist: np.ndarray, names: Sequence[str],
                   masks: Sequence[np.ndarray | None], k: int) -> LayerPartial:
    """The LayerPartial from a layer's numbers (``_layer_numbers``, on the host) and histograms (2, BINS)."""
    b, g, h, w = capture.gate.shape
    t = numbers[:6 * g].reshape(6, g)
    best = numbers[6 * g:6 * g + b * g].astype(np.float32).reshape(b, g)  # float32 values, exact in float64
    where = numbers[6 * g + b * g:].astype(np.int64).reshape(b, g)
    auc_sum, auc_count = np.zeros(g), np.zeros(g, np.int64)
    masked = [i for i, m in enumerate(masks) if m is not None]
    if masked:  # mask AUC is a rank statistic: computed on the host from the gates of the masked images
        gates_host = capture.gate[masked].float().cpu().numpy()
        for j, i in enumerate(masked):
            auc = gate_mask_auc(gates_host[j], masks[i])
            ok = np.isfinite(auc)
            auc_sum[ok] += auc[ok]
            auc_count[ok] += 1
    # The score is the longest vector: sqrt is monotonic, so only the maxima need it. numpy's float32 sqrt
    # is correctly rounded, as analyze()'s lengths are (torch's CPU one is at times 1 ulp off).
    return LayerPartial(g, capture.channels, h, w, k, b, t[0], t[1], t[2:4], t[4:6], hist[0], hist[1],
                        auc_sum, auc_count, _top_lists(np.sqrt(best), where, w, names, k))


def _max_positions(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maxima (B, G) of ``values`` (B, G, P) over P and their first positions (B, G) int64, on its device."""
    if values.device.type == "cpu":  # numpy's argmax is several times faster than torch's max(dim) on a CPU
        where = values.numpy().argmax(axis=2)
        best = np.take_along_axis(values.numpy(), where[..., None], 2)[..., 0]
        return torch.from_numpy(best), torch.from_numpy(where)
    return values.max(dim=2)


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
    """Every named layer's captures of one batch as one Partial.

    Every reduction runs on the captures' device and the results cross to the host in one copy (a few
    KB per layer plus 2 x B x G numbers): on a GPU, one wait for the device instead of several per layer.
    """
    used = [captures[name] for name in layers]
    if any(c.before is None or c.after_sq is None for c in used):
        raise ValueError("dissection needs the activations: record with activations=True")
    hists = _histograms([t for c in used for t in (c.before_sq, c.after_sq)])
    numbers = [_layer_numbers(c) for c in used]
    host = torch.cat([hists.reshape(-1).double(), *numbers]).cpu().numpy()
    hists_host = host[:hists.numel()].astype(np.int64).reshape(-1, 2, BINS)
    bounds = np.cumsum([hists.numel(), *(len(x) for x in numbers)])
    return Partial(k, {name: _layer_partial(c, host[lo:hi], hist, names, masks, k)
                       for name, c, hist, lo, hi in zip(layers, used, hists_host, bounds[:-1], bounds[1:])},
                   len(names))


def reduce_layer(capture: LayerCapture, names: Sequence[str], masks: Sequence[np.ndarray | None],
                 k: int) -> LayerPartial:
    """One layer's captures of a batch (B images named ``names``) as a LayerPartial.

    ``masks``: per image the (S, S) bool mask of the crop, or None.
    """
    return reduce_captures({"layer": capture}, ["layer"], names, masks, k).layers["layer"]


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
