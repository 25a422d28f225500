"""Compiled CPU loops (numba) over an SGE layer's activations, run inside the recorder's hooks.

On a CPU, torch reduces a (B, C, H, W) activation one operation at a time, each a pass over memory: the
group sums, the gate check and dissect's reductions took ~65 ms per batch of 8 on SGE-ResNet50 (2 cores),
a tenth of the forward. Here each group's C/G channel planes are read once (``group_sums``, which the
recorder runs as the SGE call begins, while the layer before has just written its input into the cache)
and the rest is taken from the group sums, the gate and each group's first channel (``layer_pass``).

Threads: both loops split their rows over torch's intra-op thread count. numba's OpenMP layer binds to the
libgomp torch has loaded, so they run in torch's own thread team, whose threads are still spinning from
the last convolution when a hook runs (a separate pool would wait 6-9 ms for them to stop). Where numba's
layer is another one, and in a child forked after the pool started, they run in the calling thread.
Every row is computed by one thread in one order, so the numbers do not depend on the split.

Arithmetic: S1 = x_0 + x_1 + ... and S2 = x_0*x_0 + x_1*x_1 + ... in float32, in channel order, with no
fused multiply-add, so ``group_sums`` and ``layer_pass`` give bit-identical S2 (analyze's lengths and
dissect's histograms and scores agree exactly). Maxima of values >= 0 are taken on their bit patterns
(the same order as the floats, NaN above everything), which vectorises where a float maximum does not.

The loops compile on first use (a few seconds) and are cached next to this file (numba's ``cache=True``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

CELLS = 1 << 15  # counting cells of float32 values by their top 16 bits, the sign bit left out


def applies(*tensors: torch.Tensor) -> bool:
    """True where the compiled loops can read the tensors: float32 on the CPU."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


@dataclass
class LayerPass:
    """What one pass over an SGE layer's call computes (B images, G groups, H x W positions).

    ``cells`` (2, CELLS) int64: counts of S2 before and after SGE (gate^2 * S2) by their top 16 bits;
    ``sums`` (6, B, G) float64: over each map's positions the sums of the gate, gate^2, S1, S2, gate * S1
    and gate^2 * S2; ``best`` (B, G) float32 the largest gate^2 * S2 and ``where`` (B, G) int64 its first
    flat position; ``squares`` (B, G, H, W) float32 S2 when asked for, else None; ``error`` the largest
    |y - x * gate| over each group's first channel and ``scale`` the largest |x| there (the gate check).
    """

    cells: np.ndarray
    sums: np.ndarray
    best: np.ndarray
    where: np.ndarray
    squares: torch.Tensor | None
    error: float
    scale: float


def group_sums(x: torch.Tensor, groups: int, out: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """S1 and S2 over each group's channels of float32 CPU ``x`` (B, C, H, W): each (B, G, H, W) float32,
    written into ``out`` (two float32 arrays of that size, e.g. from ``scratch``) when given."""
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"{c} channels do not split into {groups} groups")
    flat = np.ascontiguousarray(x.detach().numpy()).reshape(b, c, h * w)
    s1, s2 = out if out is not None else np.empty((2, b * groups, h * w), np.float32)
    s1, s2 = s1.reshape(b * groups, h * w), s2.reshape(b * groups, h * w)
    loops = _loops()
    chunks = loops.threads(torch.get_num_threads())
    if chunks > 1:
        loops.sums_spans(flat, c // groups, s1, s2, chunks)
    else:
        loops.sums_span(flat, c // groups, s1, s2, 0, 1)
    return torch.from_numpy(s1).reshape(b, groups, h, w), torch.from_numpy(s2).reshape(b, groups, h, w)


def scratch(name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An array of ``shape`` that this thread reuses for ``name``: valid until its next request. Fresh arrays
    of tens of MB per layer cost page faults on every call (~30k per batch of 8 on SGE-ResNet50, a few ms per
    thousand)."""
    arrays = getattr(_reused, "arrays", None)
    if arrays is None or len(arrays) > 16:  # a few shapes per model; new sizes start afresh
        arrays = _reused.arrays = {}
    key = (name, shape, np.dtype(dtype).str)
    if key not in arrays:
        arrays[key] = np.empty(shape, dtype)
    return arrays[key]


_reused = threading.local()


def sums_out(rows: int, size: int, keep_squares: bool) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (rows, size) for S1 and S2 that one SGE call consumes: reused ones (``scratch``), except a fresh
    S2 where it is kept beyond the call (``keep_squares``)."""
    s2 = np.empty((rows, size), np.float32) if keep_squares else scratch("s2", (rows, size))
    return scratch("s1", (rows, size)), s2


def layer_pass(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, keep_squares: bool = False,
               sums: tuple[torch.Tensor, torch.Tensor] | None = None) -> LayerPass:
    """One pass over an SGE call's input ``x`` and output ``y`` (B, C, H, W) float32 CPU and its ``gate``
    (B, G, H, W): see ``LayerPass``. ``keep_squares`` also returns S2 (the maps a picture draws).
    ``sums``: S1 and S2 of ``x`` as ``group_sums`` gives them, when taken already (before the call, while
    ``x`` was in the cache); else they are taken here."""
    b, c, h, w = x.shape
    g, size = gate.shape[1], h * w
    rows = b * g
    if sums is None:
        sums = group_sums(x, g, out=sums_out(rows, size, keep_squares))
    s1, s2 = (t.numpy().reshape(rows, size) for t in sums)
    xs, ys = (np.ascontiguousarray(t.detach().numpy()).reshape(b, c, size) for t in (x, y))
    gs = np.ascontiguousarray(gate.detach().float().numpy()).reshape(b, g, size)
    totals, best, where = np.empty((6, rows)), np.empty(rows, np.int32), np.empty(rows, np.int64)
    loops = _loops()
    chunks = loops.threads(torch.get_num_threads())
    cells, checks = np.zeros((chunks, 2, CELLS), np.int64), np.zeros((chunks, 2), np.int32)
    args = (xs, ys, gs, c // g, scratch("rows", (chunks, 2, size)), s1, s2, cells, totals, best, where, checks)
    if chunks > 1:
        loops.gate_spans(*args)
    else:
        loops.gate_span(*args, 0)
    error, scale = checks.max(axis=0).view(np.float32)
    return LayerPass(cells.sum(axis=0), totals.reshape(6, b, g), best.view(np.float32).reshape(b, g),
                     where.reshape(b, g), sums[1] if keep_squares else None, float(error), float(scale))


@lru_cache(maxsize=1)
def _loops():
    """The compiled loops (numba is imported, and they compile or load from its cache, on first use)."""
    from . import _loops as loops

    return loops
