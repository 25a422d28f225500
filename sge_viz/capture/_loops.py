"""The numba loops behind ``kernels`` (imported on first use: importing numba takes a moment).

The loops work on rows of (image, group) pairs, row r = b * G + g. Arrays: x, y (B, C, HW) float32,
gate (B, G, HW) float32, per = C / G channels per group. A pass is split into ``chunks`` spans of whole rows;
span t has its own scratch rows, counting cells and checks (index t of their first axis), so every row's
results are the same whichever thread takes it. ``*_spans`` run the spans in parallel (``threads``).
"""
import os

import numba
import numpy as np
from numba import njit, prange

# numba's OpenMP layer binds to the libgomp torch has loaded, so the parallel loops run in torch's own thread
# team: its threads, still spinning after a convolution, take the work at once. A separate pool (TBB,
# workqueue) would wait for them to stop spinning (6-9 ms), longer than a hook's work: ``threads`` then
# keeps the loops in the calling thread. A user's own choice (the environment variables) is kept.
if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

_OPTIONS = dict(nogil=True, cache=True, boundscheck=False)
_SIGN = np.int32(0x7FFFFFFF)


@njit(**_OPTIONS)
def _sum_row(x, b, c0, per, s1, s2):
    """S1 and S2 of one group's channels c0..c0+per-1 of image b, in channel order (no fused multiply-add:
    numba compiles without fast-math here)."""
    first = x[b, c0]
    for p in range(s1.size):
        v = first[p]
        s1[p] = v
        s2[p] = v * v
    for k in range(1, per):
        plane = x[b, c0 + k]
        for p in range(s1.size):
            v = plane[p]
            s1[p] += v
            s2[p] += v * v


@njit(**_OPTIONS)
def _max_bits(values):
    """The largest bit pattern of float32 ``values`` >= 0 as an int32 (the order of the floats)."""
    keys = values.view(np.int32)
    top = np.int32(0)
    for p in range(keys.size):
        top = max(top, keys[p])
    return top


@njit(**_OPTIONS)
def _max_abs_bits(values):
    """The bit pattern of the largest |value| of float32 ``values`` as an int32."""
    keys = values.view(np.int32)
    top = np.int32(0)
    for p in range(keys.size):
        top = max(top, keys[p] & _SIGN)
    return top


@njit(**_OPTIONS)
def _count(values, cells):
    """Add the float32 ``values`` to ``cells`` (2^15,) by their top 16 bits without the sign."""
    keys = values.view(np.int32)
    for p in range(keys.size):
        cells[(keys[p] >> 16) & 32767] += 1


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "nsz"})
def _moments_row(gate, s1, s2, after_sq, sums, r):
    """after_sq = gate^2 * S2 (float32, as torch's gate.square() * S2), and the row's six spatial sums in
    float64 (reassociated, so they vectorise)."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    for p in range(gate.size):
        g = gate[p]
        gg = g * g
        a = gg * s2[p]
        after_sq[p] = a
        t0 += g
        t1 += gg
        t2 += s1[p]
        t3 += s2[p]
        t4 += g * s1[p]
        t5 += a
    sums[0, r] = t0
    sums[1, r] = t1
    sums[2, r] = t2
    sums[3, r] = t3
    sums[4, r] = t4
    sums[5, r] = t5


@njit(**_OPTIONS)
def _span(t, chunks, rows):
    """Rows [start, stop) of span t of ``chunks``."""
    return t * rows // chunks, (t + 1) * rows // chunks


@njit(**_OPTIONS)
def sums_span(x, per, s1, s2, t, chunks):
    """S1 and S2 (rows, HW) of span t's rows."""
    groups = x.shape[1] // per
    start, stop = _span(t, chunks, s1.shape[0])
    for r in range(start, stop):
        b = r // groups
        _sum_row(x, b, (r - b * groups) * per, per, s1[r], s2[r])


@njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def sums_spans(x, per, s1, s2, chunks):
    """``sums_span`` of every span, in parallel."""
    for t in prange(chunks):
        sums_span(x, per, s1, s2, t, chunks)


@njit(**_OPTIONS)
def gate_span(x, y, gate, per, scratch, s1, s2, cells, sums, best, where, checks, t):
    """``kernels.layer_pass`` of span t's rows from S1 and S2 (rows, HW) taken already: ``scratch``
    (chunks, 2, HW) float32; ``cells`` (chunks, 2, 2^15) int64; ``sums`` (6, rows) float64; ``best`` (rows,)
    int32 bit patterns of the largest gate^2 * S2, ``where`` (rows,) int64 its first position; ``checks``
    (chunks, 2) int32 bit patterns of the largest |y - x * gate| and |x| over the first channel of each group."""
    groups = gate.shape[1]
    diff, after_sq, counts, check = scratch[t, 0], scratch[t, 1], cells[t], checks[t]
    start, stop = _span(t, cells.shape[0], s1.shape[0])
    for r in range(start, stop):
        b = r // groups
        g = r - b * groups
        row_gate, x0, out = gate[b, g], x[b, g * per], y[b, g * per]
        for p in range(diff.size):
            diff[p] = abs(out[p] - x0[p] * row_gate[p])
        check[0] = max(check[0], _max_bits(diff))
        check[1] = max(check[1], _max_abs_bits(x0))
        _moments_row(row_gate, s1[r], s2[r], after_sq, sums, r)
        _count(s2[r], counts[0])
        _count(after_sq, counts[1])
        top = _max_abs_bits(after_sq)  # >= 0, so the sign bit is set only on a NaN: NaN comes first, as in numpy
        keys = after_sq.view(np.int32)
        at = 0
        while keys[at] & _SIGN != top:
            at += 1
        best[r] = top
        where[r] = at


@njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def gate_spans(x, y, gate, per, scratch, s1, s2, cells, sums, best, where, checks):
    """``gate_span`` of every span (``cells.shape[0]`` of them), in parallel."""
    for t in prange(cells.shape[0]):
        gate_span(x, y, gate, per, scratch, s1, s2, cells, sums, best, where, checks, t)


_launched_in = None  # the process that started numba's thread pool; a forked child must not use it


def threads(wanted: int) -> int:
    """How many threads a pass may take here, at most ``wanted``: 1 unless numba's layer is OpenMP (which
    shares torch's thread team and takes calls from several threads at once) and this is the process that
    launched it (GNU OpenMP's threads do not survive a fork)."""
    global _launched_in
    if wanted < 2 or _launched_in not in (None, os.getpid()):
        return 1
    numba.set_num_threads(min(wanted, numba.config.NUMBA_NUM_THREADS))  # launches the pool; per calling thread
    if numba.threading_layer() != "omp":
        _launched_in = -1  # another layer (TBB, workqueue): this thread only, from now on
        return 1
    _launched_in = os.getpid()
    return numba.get_num_threads()
