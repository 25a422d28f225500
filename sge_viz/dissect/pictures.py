"""What the report draws, kept during the pass: per top entry a few small arrays, so drawing needs no forward.

Per entry (one image in one group's top list) of every layer:

- ``crop`` (TILE, TILE, 3) uint8: the region of the network's crop around the winning cell, a window
  of the crop resized with Pillow's bilinear filter (``patch_window``);
- ``gate`` (H, W) float16: the group's whole gate map in that image (values in (0, 1); float16 keeps
  them to ~5e-4, far below a colour step).

And in the figure layer (the last one summarised, Fig. 2's), also:

- ``view`` (FIG2_PANEL, FIG2_PANEL, 3) uint8: the whole crop, resized;
- ``before``, ``after`` (H, W) float16: the group's vector lengths before and after SGE (~1e-3 relative).

Their size depends on the layers, groups and K, never on the number of images. They live in a pool per
layer (``Pool``: one array per field, one row per entry) that the top lists index with their ``slot``
(-1 where an entry has none); ``merge_pool`` moves the rows of the entries that survive a merge.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..resize import resize_image, resize_matrix

TILE = 64  # px of one patch in groups/<layer>/gNN.png
FIG2_PANEL = 112  # px of one image in Fig. 2
PATCH_FLOOR = 0.25  # brightness of a patch where its gate map is lowest (1 where highest)
FIELDS = ("crop", "gate")
FIG_FIELDS = ("crop", "gate", "view", "before", "after")

Pool = dict[str, np.ndarray]  # field -> (rows, ...) array


def patch_window(size: int | tuple[int, int], height: int, width: int, row: int, col: int
                 ) -> tuple[tuple[int, int], int, int]:
    """Where the patch of cell (row, col) of an (height, width) map lies: (scaled, top, left), the TILE x TILE
    window at (top, left) of the crop (``size`` px, or (H, W)) resized to ``scaled`` = (H', W') px, both
    sides by one factor. The window covers about three cells (at least a third of the crop's shorter side)
    centred on the cell, kept inside the crop."""
    scaled, top, left = patch_windows(size, height, width, np.array([row]), np.array([col]))
    return scaled, int(top[0]), int(left[0])


def patch_windows(size: int | tuple[int, int], height: int, width: int, rows: np.ndarray, cols: np.ndarray
                  ) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """``patch_window`` of many cells of one map at once: (scaled (H', W'), tops (m,), lefts (m,))."""
    size_h, size_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    short = min(size_h, size_w)
    side = min(short, max(short // 3, round(3 * size_h / height)))
    scaled = (max(TILE, round(size_h * TILE / side)), max(TILE, round(size_w * TILE / side)))
    top = np.clip(np.round((np.asarray(rows) + 0.5) * scaled[0] / height - TILE / 2), 0, scaled[0] - TILE)
    left = np.clip(np.round((np.asarray(cols) + 0.5) * scaled[1] / width - TILE / 2), 0, scaled[1] - TILE)
    return scaled, top.astype(np.int64), left.astype(np.int64)


def fig2_view(view: np.ndarray) -> np.ndarray:
    """The whole crop for Fig. 2: (FIG2_PANEL, FIG2_PANEL, 3) uint8, resized with its aspect ratio kept
    (white margins right or below a non-square crop)."""
    height, width = view.shape[:2]
    scale = FIG2_PANEL / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    out = np.full((FIG2_PANEL, FIG2_PANEL, 3), 255, np.uint8)
    out[:h, :w] = resize_image(view, h, w)
    return out


def entry_pictures(views: Sequence[np.ndarray], index: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                   gates: np.ndarray, lengths: tuple[np.ndarray, np.ndarray] | None = None,
                   resized: dict[tuple[int, int], np.ndarray] | None = None) -> Pool:
    """The pool rows of m entries: entry i is image ``views[index[i]]`` ((S, S, 3) uint8) at cell
    (rows[i], cols[i]) with its group's gate map ``gates[i]`` (m, H, W); ``lengths``: the (before, after)
    vector-length maps (m, H, W) each, for the figure layer only.

    Each image is resized once per scale (``patch_window``'s; ``resized`` keeps them, by (image, px),
    for the next layers of the batch) and the crops are windows of it."""
    resized = {} if resized is None else resized
    m = len(index)
    h, w = gates.shape[1:] if gates.ndim == 3 else (1, 1)
    size = tuple(views[0].shape[:2]) if len(views) else TILE
    crops = np.empty((m, TILE, TILE, 3), np.uint8)
    if m:
        scaled, tops, lefts = patch_windows(size, h, w, rows, cols)
        used = np.unique(index)
        for b in used.tolist():
            if (b, scaled) not in resized:
                resized[(b, scaled)] = resize_image(views[b], *scaled)
        stack = np.stack([resized[(b, scaled)] for b in used.tolist()])
        # Every TILE x TILE window of the resized images as a view (B, N', N', 3, TILE, TILE): picking
        # the m windows copies whole blocks.
        every = np.lib.stride_tricks.sliding_window_view(stack, (TILE, TILE), axis=(1, 2))
        crops[:] = every[np.searchsorted(used, index), tops, lefts].transpose(0, 2, 3, 1)
    pool = {"crop": crops, "gate": np.asarray(gates, np.float16).reshape(m, h, w)}
    if lengths is not None:
        for b in set(index.tolist()):
            if (b, FIG2_PANEL) not in resized:
                resized[(b, FIG2_PANEL)] = fig2_view(views[b])
        pool["view"] = (np.stack([resized[(b, FIG2_PANEL)] for b in index.tolist()]) if m else
                        np.zeros((0, FIG2_PANEL, FIG2_PANEL, 3), np.uint8))
        pool["before"], pool["after"] = (np.asarray(x, np.float16).reshape(m, h, w) for x in lengths)
    return pool


def empty_like(pool: Pool, rows: int = 0) -> Pool:
    """A pool with ``pool``'s fields and ``rows`` uninitialised rows."""
    return {f: np.empty((rows, *a.shape[1:]), a.dtype) for f, a in pool.items()}


def merge_pool(mine: Pool | None, theirs: Pool | None, source: np.ndarray, slot: np.ndarray,
               cap: int) -> tuple[Pool | None, np.ndarray]:
    """Rows for the entries of a merged top list: ``source`` (G, n) says which side each entry came from
    (0 = mine, 1 = theirs), ``slot`` (G, n) its row in that side's pool (-1 = none). ``mine`` is updated in
    place (rows of entries that left are reused, the pool grows when needed, to at most ``cap`` rows
    when that suffices); returns (pool, slots (G, n) into it)."""
    slot = slot.copy()
    if theirs is None or not len(next(iter(theirs.values()), ())):
        slot[source == 1] = -1
        return mine, slot
    if mine is None:
        mine = empty_like(theirs)
    incoming = (source == 1) & (slot >= 0)
    need = int(incoming.sum())
    if not need:
        return mine, slot
    rows = len(next(iter(mine.values())))
    used = np.zeros(rows, bool)
    kept = slot[(source == 0) & (slot >= 0)]
    used[kept] = True
    free = np.flatnonzero(~used)
    if len(free) < need:
        grow = max(need - len(free), min(rows, max(cap - rows, 0)))
        mine = {f: np.concatenate([a, np.empty((grow, *a.shape[1:]), a.dtype)]) for f, a in mine.items()}
        free = np.concatenate([free, np.arange(rows, rows + grow)])
    dest = free[:need]
    for f, a in mine.items():
        a[dest] = theirs[f][slot[incoming]]
    slot[incoming] = dest
    return mine, slot


def compact(pool: Pool | None, slot: np.ndarray) -> tuple[Pool | None, np.ndarray]:
    """The pool reduced to the rows ``slot`` uses (in slot order), and the slots into it."""
    if pool is None:
        return None, slot
    live = slot >= 0
    out = slot.copy()
    out[live] = np.arange(int(live.sum()))
    return {f: a[slot[live]] for f, a in pool.items()}, out


def draw_patch(crop: np.ndarray, gate: np.ndarray, row: int, col: int, size: int | tuple[int, int]) -> np.ndarray:
    """The patch of one top entry, (TILE, TILE, 3) uint8: its ``crop`` lit by the gate, full brightness
    where the gate is highest in its map and ``PATCH_FLOOR`` of it where lowest (the gate stretched to
    its own map's range, so a gate between 0.45 and 0.6 still shows; the image keeps its own colours).

    ``gate`` (H, W) is the whole map, ``size`` the crop the network saw (px or (H, W)); the gate is resized to the
    crop's scale and cut to the patch's window exactly as the image was (``patch_window``)."""
    gate = np.asarray(gate, np.float32)
    h, w = gate.shape
    scaled, top, left = patch_window(size, h, w, row, col)
    rows = resize_matrix(h, scaled[0])[top:top + TILE]
    cols = resize_matrix(w, scaled[1])[left:left + TILE]
    lo, hi = float(gate.min()), float(gate.max())
    light = np.clip((rows @ gate @ cols.T - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    light = PATCH_FLOOR + (1.0 - PATCH_FLOOR) * light
    return np.clip(crop.astype(np.float32) * light[..., None] + 0.5, 0, 255).astype(np.uint8)
