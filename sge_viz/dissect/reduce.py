"""The per-batch function: a batch of crops through the model, its captures reduced to a ``Partial``.

Everything is derived from what ``GateRecorder`` captures per layer, each (B, G, H, W): the gate and
the group sums S1 = sum_c x and S2 = sum_c x^2 over the group's C/G channels of SGE's input; the
output's are gate * S1 and gate^2 * S2 (y = x * gate is checked by the recorder), never captured. With
n = C/G * H * W values per group and image: mean = sum_p S1 / n, E[x^2] = sum_p S2 / n, and the
population variance = E[x^2] - mean^2 (in float64); the vector length at p is sqrt(S2(p)). No square
root is taken per position: the length histograms bin S2 on the squared edges (summary.SQUARED_EDGES)
and a score is the float32 square root of a maximum of S2.

The recorder keeps its maps on the model's device (``keep_on_device=True``) and every reduction runs
there, one path for CPU and GPU: the totals of all layers with the same group count at once, all
histograms in one count. Only the reduced numbers cross to the host, in one copy per batch: per layer
the totals and histograms, a few KB, and each image's maximum and its position per group (B x G), which
the host sorts into the top lists. The one exception is mask AUC (a rank statistic), computed on the
host from the gates of the images that have a mask.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..capture.preprocess import normalise_batch, seen_view
from ..capture.recorder import GateRecorder, LayerCapture, require_gates
from ..domain import Judge, Verdict, describe
from ..explain.faithfulness import Removal, image_gaps
from ..metrics.localisation import gate_mask_auc
from ..models.factory import LoadedModel
from .pictures import entry_pictures
from .summary import BINS, SQUARED_EDGES, LayerPartial, Partial, TopLists, precedes

# Histograms without comparisons: every squared edge is a float32 whose low 16 bits are zero, so the
# cell of float32 values sharing their top 16 bits (sign, exponent, 7 mantissa bits) lies wholly in one
# bin, and counting the cells counts the bins exactly. Bin i holds the cells from edge i's up to edge
# i+1's; the last runs to the end, inf and NaN included.
_BIN_START = (SQUARED_EDGES[:BINS].view(np.uint32) >> 16).astype(np.intp)  # (BINS,) first cell of each bin
_BIN_END = np.append(_BIN_START[1:], 1 << 15)  # (BINS,) one past each bin's last cell


def histograms(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Counts (len(tensors), BINS) int64 of each tensor's float32 squared lengths (>= 0, any shape) on
    SQUARED_EDGES (bins [E_i, E_i+1), the last also counting larger values, inf and NaN), in one torch
    bincount on the tensors' device.

    Each value's key is its top 16 bits as a signed number, shifted into [0, 2^16) and then into its
    tensor's row: the cells of every tensor are counted at once (torch's bincount reads the largest key
    back to the host, so one call per tensor would stall the device each time). The two signs of a cell
    are added, and each bin is a difference of running totals over its cells. Every count stays exact.
    """
    device = tensors[0].device
    sizes = [t.numel() for t in tensors]
    keys = torch.empty(sum(sizes), dtype=torch.int32, device=device)
    offset = 0
    for row, (t, size) in enumerate(zip(tensors, sizes)):
        part = keys[offset:offset + size]
        torch.bitwise_right_shift(t.float().view(torch.int32), 16, out=part.view(t.shape))
        part += (1 << 15) + (row << 16)  # [-2^15, 2^15) -> this row's [0, 2^16)
        offset += size
    cells = torch.bincount(keys, minlength=len(tensors) << 16).reshape(len(tensors), 2, 1 << 15).sum(1)
    running = torch.nn.functional.pad(cells.cumsum(1), (1, 0))  # (rows, 2^15 + 1): cells before each index
    start, end = (torch.as_tensor(i, device=device) for i in (_BIN_START, _BIN_END))
    return running[:, end] - running[:, start]


def _spatial_sums(capture: LayerCapture, after_sq: torch.Tensor) -> torch.Tensor:
    """(6, B, G) float64: over each map's positions, the sums of the gate, the gate squared, and the group
    sums S1 and S2 before and after SGE (the output's S1 is gate * S1 of the input, checked by the
    recorder; its S2 is given: ``after_sq`` (B, G, H, W))."""
    gate = capture.gate.float()
    after = capture.after if capture.after is not None else gate * capture.before
    maps = (gate, gate * gate, capture.before, capture.before_sq, after, after_sq)
    return torch.stack([m.sum(dim=(2, 3), dtype=torch.float64) for m in maps])


def _totals(sums: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(L, 6, G) float64 totals over the batch of L layers with the same G, from their spatial sums
    (L, 6, B, G) and values per group and image n (L,): the gate's sum and sum of squares, and the sum
    and sum of squares over images of each image's population variance before and after SGE, each
    E[x^2] - mean^2 (in float64 throughout: the spatial sums too, since E[x^2] - mean^2 cancels)."""
    s = sums.double()
    n = n.view(-1, 1, 1)
    var_b = (s[:, 3] / n - (s[:, 2] / n).square()).clamp_(min=0.0)  # (L, B, G)
    var_a = (s[:, 5] / n - (s[:, 4] / n).square()).clamp_(min=0.0)
    return torch.stack([s[:, 0].sum(1), s[:, 1].sum(1), var_b.sum(1), var_b.square().sum(1),
                        var_a.sum(1), var_a.square().sum(1)], dim=1)


def _layer_partial(shape: tuple[int, int, int, int], channels: int, t: np.ndarray, hist: np.ndarray,
                   best: np.ndarray, where: np.ndarray, names: Sequence[str], masks: Sequence[np.ndarray | None],
                   masked_gates: np.ndarray, k: int) -> LayerPartial:
    """The LayerPartial of one layer (gate ``shape`` (B, G, H, W)) from its results on the host: totals
    ``t`` (6, G) (see ``_totals``), histograms (2, BINS), per image and group the largest squared
    after-SGE length ``best`` (B, G) float32 and its flat position ``where`` (B, G), and the gates of
    the images that have a mask, in their order (M, G, H, W) float32 (M = 0 without masks)."""
    b, g, h, w = shape
    auc_sum, auc_count = np.zeros(g), np.zeros(g, np.int64)
    for gates, mask in zip(masked_gates, [m for m in masks if m is not None]):  # mask AUC (a rank statistic): host
        auc = gate_mask_auc(gates, mask)
        ok = np.isfinite(auc)
        auc_sum[ok] += auc[ok]
        auc_count[ok] += 1
    # The score is the longest vector: sqrt is monotonic, so only the maxima need it. numpy's float32 sqrt
    # is correctly rounded, as analyze()'s lengths are (torch's CPU one is at times 1 ulp off).
    return LayerPartial(g, channels, h, w, k, b, t[0], t[1], t[2:4], t[4:6], hist[0], hist[1],
                        auc_sum, auc_count, _top_lists(np.sqrt(best), where, w, names, k))


def _top_lists(scores: np.ndarray, where: np.ndarray, width: int, names: Sequence[str], k: int) -> TopLists:
    """Per group its best k (score, image, row, col) of the batch, in TopLists' order.

    ``scores``, ``where``: (B, G) each image's score and the flat position of it in rows of ``width``.
    Sorted on the host, all B at once, so that ties at the k-th place go by image name.
    """
    rank = {name: i for i, name in enumerate(sorted(set(names)))}
    # Ties on the score go by name, then row, then col: one key, the name's rank then the flat position
    # (rows of ``width``), so lexsort has two keys to sort instead of four.
    tie = np.array([rank[n] for n in names])[:, None] * (int(where.max(initial=0)) + 1) + where
    order = np.lexsort((tie, -scores), axis=0)[:k].T  # (G, k')
    cells = np.take_along_axis(where.T, order, 1)
    return TopLists(np.take_along_axis(scores.T, order, 1).astype(np.float64), np.asarray(names, dtype=str)[order],
                    cells // width, cells % width)


class QueuedReduction:
    """One batch's reductions, queued on the captures' device and copying to the host; ``finish``
    waits for them and builds the Partial.

    On a GPU the copy goes to pinned memory without blocking, so the host can queue the next batch's
    forward before it waits for this one, and the device works while the host sorts this batch's top
    lists and merges its partial. On a CPU everything is done when this is built.
    """

    def __init__(self, captures: dict[str, LayerCapture], layers: Sequence[str], names: Sequence[str],
                 masks: Sequence[np.ndarray | None], k: int, views: Sequence[np.ndarray] | None = None):
        used = [captures[name] for name in layers]
        # With ``views`` (the crops, (S, S, 3) uint8), the top entries keep what the report draws
        # (``pictures``): the maps stay referenced until ``finish`` picks the entries.
        self.views = views
        self.verdicts: dict[str, Verdict] = {}  # set by queue_batch: each image's out-of-domain verdict
        self.left_out: list[dict] = []  # and the images it left out for it ({"path", "reason"})
        self.truths: dict[str, dict] = {}  # and the model's answer on the images with a known true class
        self.faithfulness: dict[str, dict] = {}  # and each image's deletion/insertion gaps, when asked for
        self.maps = [(c.gate, c.before_sq, c.after_sq) for c in used] if views is not None else []
        if any(c.before is None or c.before_sq is None for c in used):
            raise ValueError("dissection needs the activations: record with activations=True")
        self.layers, self.names, self.masks, self.k = list(layers), list(names), list(masks), k
        self.shapes = [tuple(c.gate.shape) for c in used]
        self.channels = [c.channels for c in used]
        self.by_groups: dict[int, list[int]] = {}
        for i, shape in enumerate(self.shapes):
            self.by_groups.setdefault(shape[1], []).append(i)
        self.sizes: list[int] = []
        self.host, self.done = None, None
        if not used:
            return
        device = used[0].gate.device
        after_sq = [c.after_sq if c.after_sq is not None else c.gate.float().square() * c.before_sq for c in used]
        hists = histograms([t for c, a in zip(used, after_sq) for t in (c.before_sq, a)]).reshape(-1)
        sums = [_spatial_sums(c, a) for c, a in zip(used, after_sq)]
        maxima = [a.float().reshape(*a.shape[:2], -1).max(dim=2) for a in after_sq]
        totals = [_totals(torch.stack([sums[i] for i in rows]),
                          torch.tensor([self.channels[i] // g * self.shapes[i][2] * self.shapes[i][3] for i in rows],
                                       dtype=torch.float64, device=device))
                  for g, rows in self.by_groups.items()]
        masked = [i for i, m in enumerate(masks) if m is not None]
        gates = [c.gate[masked].float().reshape(-1) for c in used] if masked else []
        # One copy to the host: float64 holds the counts, the float32 maxima and gates and the positions exactly.
        parts = [hists.double(), *(t.reshape(-1) for t in totals),
                 *(x.double().reshape(-1) for best, where in maxima for x in (best, where)),
                 *(gate.double() for gate in gates)]
        self.sizes = [p.numel() for p in parts]
        flat = torch.cat(parts)
        if device.type == "cuda":
            self.host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
            self.host.copy_(flat, non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record()
        else:
            self.host = flat.cpu()

    def finish(self, floor: dict[str, TopLists] | None = None) -> Partial:
        """Wait for the device, then build the Partial on the host.

        ``floor``: per layer the full top lists of the summary this batch will be merged into
        (``Partial.floor``); entries that cannot enter them get no pictures (slot -1)."""
        if self.host is None:
            return Partial(self.k, {}, len(self.names), list(self.left_out), dict(self.verdicts), dict(self.truths),
                           dict(self.faithfulness))
        if self.done is not None:
            self.done.synchronize()
        pieces = iter(np.split(self.host.numpy(), np.cumsum(self.sizes)[:-1]))
        count = len(self.layers)
        hists = next(pieces).astype(np.int64).reshape(count, 2, BINS)
        totals_of = {i: t for g, rows in self.by_groups.items() for i, t in zip(rows, next(pieces).reshape(-1, 6, g))}
        maxima = [(next(pieces), next(pieces)) for _ in range(count)]
        masked = any(m is not None for m in self.masks)  # the gates of the masked images follow, per layer
        gates = [(next(pieces) if masked else np.zeros(0)).astype(np.float32).reshape(-1, *shape[1:])
                 for shape in self.shapes]
        layers_out, resized = {}, {}  # resized: the crops at each patch scale, shared by the layers
        for i, (name, shape) in enumerate(zip(self.layers, self.shapes)):
            best = maxima[i][0].astype(np.float32).reshape(shape[:2])
            where = maxima[i][1].astype(np.int64).reshape(shape[:2])
            layers_out[name] = _layer_partial(shape, self.channels[i], totals_of[i], hists[i], best, where,
                                              self.names, self.masks, gates[i], self.k)
            if self.views is not None:
                _keep_pictures(layers_out[name], self.views, self.names, *self.maps[i], (floor or {}).get(name),
                               figure=i == count - 1, resized=resized)
        self.maps = []
        return Partial(self.k, layers_out, len(self.names), list(self.left_out), dict(self.verdicts),
                       dict(self.truths), dict(self.faithfulness))


def _keep_pictures(layer: LayerPartial, views: Sequence[np.ndarray], names: Sequence[str], gate: torch.Tensor,
                   before_sq: torch.Tensor, after_sq: torch.Tensor | None, floor: TopLists | None, figure: bool,
                   resized: dict | None = None) -> None:
    """Give ``layer``'s top entries that can still enter ``floor`` (all without one) their pictures: the
    maps (B, G, H, W) of the batch are gathered for those entries only, on their device."""
    best = layer.best
    wanted = (np.ones(best.score.shape, bool) if floor is None else
              precedes(*best.fields(), floor.last()))
    groups, _ = np.nonzero(wanted)
    at = {n: i for i, n in enumerate(names)}
    index = np.array([at[n] for n in best.image[wanted].tolist()], np.int64)
    rows, cols = best.row[wanted], best.col[wanted]
    pick = (torch.from_numpy(index).to(gate.device), torch.from_numpy(groups).to(gate.device))

    def gather(maps: torch.Tensor) -> np.ndarray:
        if maps.device.type == "cpu" and maps.dtype == torch.float32:  # numpy's fancy indexing is faster here
            return maps.numpy()[index, groups]
        return maps[pick].float().cpu().numpy()

    gates = gather(gate)
    lengths = None
    if figure:
        before = gather(before_sq)
        # after_sq = gate^2 * before_sq, the recorder's arithmetic, for the picked maps only (when not captured)
        after = gather(after_sq) if after_sq is not None else np.square(gates) * before
        lengths = (np.sqrt(before), np.sqrt(after))
    layer.pictures = entry_pictures(views, index, rows, cols, gates, lengths, resized)
    slot = np.full(best.score.shape, -1, np.int64)
    slot[wanted] = np.arange(len(index))
    layer.best = dataclasses.replace(best, slot=slot)


def reduce_captures(captures: dict[str, LayerCapture], layers: Sequence[str], names: Sequence[str],
                    masks: Sequence[np.ndarray | None], k: int) -> Partial:
    """Every named layer's captures of one batch as one Partial.

    Every reduction runs on the captures' device, batched over the layers where shapes allow (the
    totals of all layers with the same group count at once, all histograms in one count), and the
    results cross to the host in one copy: on a GPU the cost is a few hundred small kernels and one
    wait for the device, not several waits per layer.
    """
    return QueuedReduction(captures, layers, names, masks, k).finish()


def select_layers(recorder_layers: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The layers to summarise: all, or those named (in forward order); ValueError names unknown ones."""
    if not wanted:
        return list(recorder_layers)
    unknown = [w for w in wanted if w not in recorder_layers]
    if unknown:
        raise ValueError(f"unknown SGE layer(s) {', '.join(unknown)}; the model has {', '.join(recorder_layers)}")
    return [name for name in recorder_layers if name in set(wanted)]


def queue_batch(loaded: LoadedModel, views: Sequence[np.ndarray], names: Sequence[str],
                masks: Sequence[np.ndarray | None], k: int, layers: Sequence[str] | None = None,
                pictures: bool = False, skip_out_of_domain: bool = False,
                truths: dict[str, str] | None = None, faithfulness: Removal | None = None) -> QueuedReduction:
    """``dissect_batch`` up to the wait for the device: ``.finish()`` gives the Partial. Queue the next
    batch before finishing this one and, on a GPU, the host's work overlaps the device's."""
    if not views:
        return QueuedReduction({}, [], [], [], k)
    x = normalise_batch(views, loaded.config, loaded.device, loaded.dtype)
    judge = Judge(getattr(loaded, "ood", None))  # the same forward gives each image's out-of-domain verdict
    with torch.inference_mode():
        with GateRecorder(loaded.model, keep_on_device=True, output_sums=False,
                          patterns=loaded.config.sge_layers) as recorder:
            with judge.watching(loaded.model, active=recorder._mine):
                logits = loaded.model(x)
        require_gates(recorder)
        answers = _answers(loaded, logits, names, truths or {})
        chosen = select_layers(recorder.layer_names, layers)
        captures, verdicts, left_out = recorder.captures, {}, []
        if judge.detector is not None:
            verdicts = dict(zip(names, judge.verdicts(len(names))))
            if skip_out_of_domain:
                keep = [i for i, n in enumerate(names) if not verdicts[n].out_of_domain]
                if len(keep) < len(names):
                    left_out = [{"path": names[i], "reason": _left_out(verdicts[names[i]])}
                                for i in range(len(names)) if i not in set(keep)]
                    captures = {name: _select(c, keep) for name, c in captures.items()}
                    views, names, masks = ([seq[i] for i in keep] for seq in (views, names, masks))
        drawn = [seen_view(v, loaded.config) for v in views] if pictures else None  # a grey model's pictures are grey
        queued = (QueuedReduction(captures, chosen, names, masks, k, drawn) if names else
                  QueuedReduction({}, [], [], [], k))
        queued.verdicts, queued.left_out, queued.truths = verdicts, left_out, answers
    if faithfulness is not None and loaded.config.classifies:  # outside inference mode: Grad-CAM needs a backward
        queued.faithfulness = {n: image_gaps(loaded, v, faithfulness) for n, v in zip(names, views)}
    return queued


def _answers(loaded: LoadedModel, logits, names: Sequence[str], truths: dict[str, str]) -> dict[str, dict]:
    """The model's top-1 answer for the images of the batch whose true class is known (``truths``, by
    name), as summary.json's "true_classes" lists them; {} for a gates-only model."""
    known = [i for i, n in enumerate(names) if truths.get(n)]
    if not known or not loaded.config.classifies:
        return {}
    values, classes = logits[known].float().softmax(dim=1).max(dim=1)
    out = {}
    for i, p, c in zip(known, values.tolist(), classes.tolist()):
        said, true = loaded.config.class_name(c), truths[names[i]]
        out[names[i]] = {"true_class": true, "predicted": said, "probability": round(p, 4), "right": said == true}
    return out


def _left_out(v: Verdict) -> str:
    return (f"out of domain ({describe(v.score)} {v.value:.3g} > threshold {v.threshold:.3g}): left out "
            "(--skip-out-of-domain)")


def _select(capture: LayerCapture, keep: list[int]) -> LayerCapture:
    """The capture of the images ``keep`` (indices into the batch) only."""
    index = torch.tensor(keep, device=capture.gate.device)
    return dataclasses.replace(capture, **{f: getattr(capture, f).index_select(0, index) for f in
                                           ("gate", "before", "after", "before_sq", "after_sq")
                                           if getattr(capture, f) is not None})


def dissect_batch(loaded: LoadedModel, views: Sequence[np.ndarray], names: Sequence[str],
                  masks: Sequence[np.ndarray | None], k: int, layers: Sequence[str] | None = None,
                  pictures: bool = False, floor: dict[str, TopLists] | None = None,
                  skip_out_of_domain: bool = False, truths: dict[str, str] | None = None,
                  faithfulness: Removal | None = None) -> Partial:
    """The per-batch function: crops (each (S, S, 3) uint8) through the model, reduced on its device.

    ``masks``: per crop its (S, S) bool mask or None. ``layers``: names to summarise (default all).
    ``pictures``: keep what the report draws for the top entries that can enter ``floor``'s top lists.
    ``skip_out_of_domain``: leave out of every number the images the model's out-of-domain detector
    rejects (listed as skipped); every image's verdict is in ``Partial.verdicts`` either way.
    ``truths``: the true class of the images that have a known one, by name (the shipped example scenes);
    the model's answer on each is in ``Partial.truths``. ``faithfulness``: the removal settings of each
    image's deletion and insertion gaps (``Partial.faithfulness``); None: not computed.
    """
    return queue_batch(loaded, views, names, masks, k, layers, pictures, skip_out_of_domain,
                       truths, faithfulness).finish(floor)
