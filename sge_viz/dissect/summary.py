"""The mergeable summary of a set of images: what each SGE group does across all of them.

A ``Partial`` holds, per SGE layer and group, only running totals whose size does not depend on the
number of images: a top-K list of (score, image, row, col); the sum and sum of squares of the gate
over every position; the count, sum and sum of squares of the per-image variances before and after
SGE; fixed-edge histograms of vector lengths; the sum and count of mask AUCs. ``merge`` adds two
partials; it is associative and commutative (sums add; top-K lists merge by one total order), so one
function serves batches, worker processes, resume and Ray, and any grouping of the same images gives
the same summary (sums in float64: equal to ~1e-15 relative, counts and top-K exactly).

Definitions (``summary_dict`` reports them):

- vector length at position p of group g: ||x_g(p)||_2 over the group's C/G channels, "before" on
  SGE's input, "after" on its output;
- score of an image for (layer, group): the maximum over positions of the after-SGE vector length;
  row, col: the cell of that maximum in the layer's H x W map (first in row-major order on ties);
- gate_mean, gate_std: over every position of every image (population std);
- variance_before / variance_after: per image, the population variance (ddof 0) of all the group's
  C/G x H x W activation values at SGE's input / output, summarised as mean and population std over
  images;
- length_histogram: counts of the vector lengths of every position of every group of every image, on
  ``LENGTH_EDGES`` (bins [e_i, e_i+1), the last one closed; lengths past the last edge count in it).
  The edges are e_i = sqrt(E_i) with E_i in ``SQUARED_EDGES``: 0, then 10^(j/10 - 6) for j = 0..140
  rounded to 8 significant bits (float32 values with their low 16 bits zero); the squared length
  (the float32 sum of squares over the group's channels) is binned on E_i, which is the same bin;
- mask_auc: over the images with a mask, the mean ROC-AUC of the group's gate upsampled to the crop
  against the mask cropped like the image (null without masks).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from ..domain.verdict import Verdict
from .pictures import Pool, compact, merge_pool


def _squared_edges() -> np.ndarray:
    """(142,) float32: 0, then 10^(j/10 - 6) for j = 0..140 rounded to 8 significant bits."""
    x = np.logspace(-6, 8, 141)
    step = 2.0 ** (np.floor(np.log2(x)) - 7)  # 8 significant bits: in [2^e, 2^(e+1)) steps of 2^(e-7)
    return np.concatenate([[0.0], np.round(x / step) * step]).astype(np.float32)


# Histogram edges, shared by every layer and run so histograms add bin by bin. The squared lengths are
# binned (no square root per position) on SQUARED_EDGES: float32 values whose low 16 bits are zero
# (exactly bfloat16s), which lets reduce.py count them with one table of the top 16 bits. In length
# units the edges are their square roots (float64; sqrt is strictly increasing on float32 values, so a
# length lies in [e_i, e_i+1) exactly when its square lies in [E_i, E_i+1)): 0, then 141 edges from
# ~1e-3 to ~1e4, 20 bins per decade, each within 0.2% of 10^(j/20 - 3). Any layer of any model fits.
SQUARED_EDGES = _squared_edges()
LENGTH_EDGES = np.sqrt(SQUARED_EDGES.astype(np.float64))
BINS = LENGTH_EDGES.size - 1
FORMAT = 2  # version of the partial's JSON form (2: histograms on the squared-length edges)


@dataclass(frozen=True)
class TopLists:
    """Per group its best n <= K (score, image, row, col), best first, as arrays (G, n).

    Every image enters every group once, so all groups hold the same n = min(K, images). The order is
    total: score descending, then image name, row and col ascending; ``best`` sorts by it, so a merge
    is the best K of the two sides' entries whichever side held them. ``slot`` (G, n) int64, or None:
    each entry's row in its layer's picture pool (``pictures``), -1 for none.
    """

    score: np.ndarray  # float64
    image: np.ndarray  # str (numpy unicode)
    row: np.ndarray  # int64
    col: np.ndarray  # int64
    slot: np.ndarray | None = None  # int64

    @classmethod
    def empty(cls, groups: int) -> TopLists:
        zeros = np.zeros((groups, 0), np.int64)
        return cls(zeros.astype(np.float64), zeros.astype(str), zeros, zeros)

    @classmethod
    def best(cls, score: np.ndarray, image: np.ndarray, row: np.ndarray, col: np.ndarray, k: int,
             slot: np.ndarray | None = None) -> TopLists:
        """The best ``k`` per group (row of the (G, m) arrays) in the total order."""
        order = cls.order(score, image, row, col, k)
        return cls(*(np.take_along_axis(a, order, 1) for a in (score, image, row, col)),
                   None if slot is None else np.take_along_axis(slot, order, 1))

    @staticmethod
    def order(score: np.ndarray, image: np.ndarray, row: np.ndarray, col: np.ndarray, k: int) -> np.ndarray:
        """(G, min(k, m)) indices of the best ``k`` per group, best first."""
        return np.lexsort((col, row, image, -score), axis=1)[:, :k]

    def merge(self, other: TopLists, k: int) -> TopLists:
        """The best ``k`` of both sides (their slots dropped: ``merge_with_slots`` keeps them)."""
        return TopLists.best(*(np.concatenate(pair, axis=1) for pair in zip(self.fields(), other.fields())), k)

    def merge_with_slots(self, other: TopLists, k: int) -> tuple[TopLists, np.ndarray]:
        """The best ``k`` of both sides, each entry with its side's slot (-1 where that side has none),
        and which side it came from (G, n): 0 = self, 1 = other."""
        cat = [np.concatenate(pair, axis=1) for pair in zip(self.fields(), other.fields())]
        order = TopLists.order(*cat, k)
        slots = np.concatenate([t.slots() for t in (self, other)], axis=1)
        source = np.concatenate([np.zeros(self.score.shape, np.int8), np.ones(other.score.shape, np.int8)], axis=1)
        picked = [np.take_along_axis(a, order, 1) for a in (*cat, slots, source)]
        return TopLists(*picked[:5]), picked[5]

    def slots(self) -> np.ndarray:
        """(G, n) int64: the slots, -1 everywhere without them."""
        return self.slot if self.slot is not None else np.full(self.score.shape, -1, np.int64)

    def fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.score, self.image, self.row, self.col

    def last(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each group's last entry (score, image, row, col), (G,) each; the lists must not be empty."""
        return tuple(a[:, -1] for a in self.fields())  # type: ignore[return-value]

    def as_lists(self) -> list[list[tuple[float, str, int, int]]]:
        """Per group its entries as plain Python (score, image, row, col) tuples."""
        return [list(zip(*group)) for group in zip(*(a.tolist() for a in self.fields()))]

    @classmethod
    def from_lists(cls, lists: list[list], groups: int) -> TopLists:
        """From per-group lists of (score, image, row, col), as ``as_lists`` and the JSON form give."""
        n = len(lists[0]) if lists else 0
        if len(lists) != groups or any(len(t) != n for t in lists):
            raise ValueError(f"top lists must be {groups} lists of equal length")
        if n == 0:
            return cls.empty(groups)
        score, image, row, col = (np.array(column).reshape(groups, n) for column in zip(*(e for t in lists for e in t)))
        return cls(score.astype(np.float64), image.astype(str), row.astype(np.int64), col.astype(np.int64))


def precedes(score: np.ndarray, image: np.ndarray, row: np.ndarray, col: np.ndarray,
             than: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Where entries (G, n) come strictly before ``than`` (each (G,): one entry per group) in the total order."""
    s, i, r, c = (a[:, None] for a in than)
    ahead, tied = score > s, score == s
    if tied.any():  # names, rows and cols decide between equal scores (rare: compared only there)
        g, n = np.nonzero(tied)
        i, r, c = i[g, 0], r[g, 0], c[g, 0]
        name, y, x = image[g, n], row[g, n], col[g, n]
        ahead[g, n] = (name < i) | ((name == i) & ((y < r) | ((y == r) & (x < c))))
    return ahead


@dataclass
class LayerPartial:
    """Running totals of one SGE layer; arrays are (G,) float64 unless noted."""

    groups: int
    channels: int
    height: int
    width: int
    k: int
    images: int = 0
    gate_sum: np.ndarray = None  # type: ignore[assignment]
    gate_sq: np.ndarray = None  # type: ignore[assignment]
    var_before: np.ndarray = None  # type: ignore[assignment]  # (2, G): sum and sum of squares over images
    var_after: np.ndarray = None  # type: ignore[assignment]
    hist_before: np.ndarray = None  # type: ignore[assignment]  # (BINS,) int64
    hist_after: np.ndarray = None  # type: ignore[assignment]
    auc_sum: np.ndarray = None  # type: ignore[assignment]
    auc_count: np.ndarray = None  # type: ignore[assignment]  # (G,) int64
    best: TopLists = None  # type: ignore[assignment]  # per group its top K, best first
    pictures: Pool | None = None  # what the report draws per top entry (``pictures`` module), rows = best.slot

    def __post_init__(self) -> None:
        g = self.groups
        for name, shape, dtype in (("gate_sum", (g,), np.float64), ("gate_sq", (g,), np.float64),
                                   ("var_before", (2, g), np.float64), ("var_after", (2, g), np.float64),
                                   ("hist_before", (BINS,), np.int64), ("hist_after", (BINS,), np.int64),
                                   ("auc_sum", (g,), np.float64), ("auc_count", (g,), np.int64)):
            value = getattr(self, name)
            setattr(self, name, np.zeros(shape, dtype) if value is None else np.asarray(value, dtype).reshape(shape))
        if self.best is None:
            self.best = TopLists.empty(g)

    @property
    def top(self) -> list[list[tuple[float, str, int, int]]]:
        """Per group its top-K entries (score, image, row, col), best first, as plain Python values."""
        return self.best.as_lists()

    def shape_key(self) -> tuple:
        return (self.groups, self.channels, self.height, self.width, self.k)

    def merge(self, other: LayerPartial) -> LayerPartial:
        """The totals of both layers' images (neither is changed)."""
        return self.copy().absorb(other)

    def copy(self) -> LayerPartial:
        pool = None if self.pictures is None else {f: a.copy() for f, a in self.pictures.items()}
        return dataclasses.replace(self, pictures=pool)

    def absorb(self, other: LayerPartial) -> LayerPartial:
        """Add ``other``'s totals to this layer in place (``other`` is not changed); returns self.

        Top entries keep their pictures: rows of entries that left the top lists are reused for those
        that came in from ``other``, so the pool never holds more than G x K live rows.
        """
        if self.shape_key() != other.shape_key():
            raise ValueError(f"cannot merge layers of different shapes: {self.shape_key()} vs {other.shape_key()}")
        self.images += other.images
        for name in ("gate_sum", "gate_sq", "var_before", "var_after", "hist_before", "hist_after", "auc_sum",
                     "auc_count"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if self.pictures is None and other.pictures is None:
            self.best = self.best.merge(other.best, self.k)
            return self
        best, source = self.best.merge_with_slots(other.best, self.k)
        self.pictures, slot = merge_pool(self.pictures, other.pictures, source, best.slots(),
                                         cap=self.groups * self.k)
        self.best = dataclasses.replace(best, slot=slot)
        return self

    def to_json(self) -> dict:
        return {"groups": self.groups, "channels": self.channels, "height": self.height, "width": self.width,
                "k": self.k, "images": self.images,
                **{name: getattr(self, name).tolist() for name in (
                    "gate_sum", "gate_sq", "var_before", "var_after", "hist_before", "hist_after",
                    "auc_sum", "auc_count")},
                "top": [[list(e) for e in t] for t in self.top]}

    @classmethod
    def from_json(cls, data: dict) -> LayerPartial:
        fields = {name: value for name, value in data.items() if name != "top"}
        return cls(**fields, best=TopLists.from_lists(data["top"], int(data["groups"])))

    # --- the reported numbers --------------------------------------------------------------------

    def per_group(self) -> list[dict]:
        """One entry per group, the numbers of the module docstring (null where undefined)."""
        positions = self.images * self.height * self.width
        out, top = [], self.top
        for g in range(self.groups):
            gate_mean = self.gate_sum[g] / positions if positions else math.nan
            gate_var = self.gate_sq[g] / positions - gate_mean ** 2 if positions else math.nan
            out.append({
                "group": g, "gate_mean": _num(gate_mean), "gate_std": _num(math.sqrt(max(gate_var, 0.0))),
                "variance_before": _moments(self.var_before[:, g], self.images),
                "variance_after": _moments(self.var_after[:, g], self.images),
                "top": [{"image": i, "score": s, "row": r, "col": c} for s, i, r, c in top[g]],
                "mask_auc": _num(self.auc_sum[g] / self.auc_count[g]) if self.auc_count[g] else None,
                "mask_images": int(self.auc_count[g]),
            })
        return out


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _moments(sums: np.ndarray, n: int) -> dict:
    if n == 0:
        return {"mean": None, "std": None}
    mean = sums[0] / n
    return {"mean": _num(mean), "std": _num(math.sqrt(max(sums[1] / n - mean ** 2, 0.0)))}


@dataclass
class Partial:
    """A mergeable summary of some images: the layers' totals, the count, and the skipped inputs."""

    k: int
    layers: dict[str, LayerPartial] = field(default_factory=dict)
    images: int = 0
    skipped: list[dict] = field(default_factory=list)
    # Each image's out-of-domain verdict by name; empty for a model without an out-of-domain detector.
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    # The model's answer on each image with a known true class (a shipped example scene), by name:
    # {"true_class", "predicted", "probability", "right"}.
    truths: dict[str, dict] = field(default_factory=dict)
    # With --faithfulness: each image's gaps (``sge_viz.explain.faithfulness.image_gaps``), by name.
    faithfulness: dict[str, dict] = field(default_factory=dict)

    def merge(self, other: Partial) -> Partial:
        """The summary of both partials' images (neither is changed)."""
        return self.copy().absorb(other)

    def copy(self) -> Partial:
        return Partial(self.k, {n: layer.copy() for n, layer in self.layers.items()}, self.images,
                       list(self.skipped), dict(self.verdicts), dict(self.truths), dict(self.faithfulness))

    def absorb(self, other: Partial) -> Partial:
        """Add ``other``'s images to this summary in place (``other`` is not changed); returns self."""
        if self.k != other.k:
            raise ValueError(f"cannot merge top-{self.k} with top-{other.k} summaries")
        for name, layer in other.layers.items():  # layers keep forward order whichever side saw them first
            self.layers[name] = self.layers[name].absorb(layer) if name in self.layers else layer.copy()
        self.images += other.images
        self.skipped = sorted(self.skipped + other.skipped, key=lambda s: (s["path"], s["reason"]))
        self.verdicts.update(other.verdicts)
        self.truths.update(other.truths)
        self.faithfulness.update(other.faithfulness)
        return self

    def floor(self) -> dict[str, TopLists]:
        """Per layer its top lists, once full (K entries per group): an entry that does not come before a
        group's last one can never enter this summary (``reduce`` keeps no pictures for it)."""
        return {n: layer.best for n, layer in self.layers.items() if layer.best.score.shape[1] >= self.k}

    def to_json(self) -> str:
        """The numbers as JSON (the pictures are left out: ``to_bytes`` keeps them)."""
        return json.dumps({"format": FORMAT, "k": self.k, "images": self.images, "skipped": self.skipped,
                           "verdicts": {n: v.to_json() for n, v in self.verdicts.items()}, "truths": self.truths,
                           "faithfulness": self.faithfulness,
                           "layers": {n: layer.to_json() for n, layer in self.layers.items()}})

    @classmethod
    def from_json(cls, text: str) -> Partial:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"partial summary format {data.get('format')!r}, expected {FORMAT}")
        return cls(int(data["k"]), {n: LayerPartial.from_json(v) for n, v in data["layers"].items()},
                   int(data["images"]), list(data["skipped"]),
                   {n: Verdict.from_json(v) for n, v in data.get("verdicts", {}).items()},
                   dict(data.get("truths", {})), dict(data.get("faithfulness", {})))

    def save(self, file, meta: dict | None = None) -> None:
        """Write the numbers, the pictures and ``meta`` (a JSON-able dict) to ``file`` (a path or a binary
        file) as an .npz archive (no pickles); ``load`` reads it back."""
        arrays = {"json": np.frombuffer(self.to_json().encode(), np.uint8),
                  "meta": np.frombuffer(json.dumps(meta or {}).encode(), np.uint8)}
        for i, layer in enumerate(self.layers.values()):
            if layer.pictures is None:
                continue
            pool, slot = compact(layer.pictures, layer.best.slots())
            arrays[f"{i}/slot"] = slot
            arrays.update({f"{i}/{f}": a for f, a in pool.items()})
        np.savez(file, **arrays)

    @classmethod
    def load(cls, file) -> tuple[Partial, dict]:
        """(partial, meta) from what ``save`` wrote; ValueError (or OSError) when it is not that."""
        with np.load(file, allow_pickle=False) as npz:
            partial = cls.from_json(npz["json"].tobytes().decode())
            meta = json.loads(npz["meta"].tobytes().decode())
            for i, layer in enumerate(partial.layers.values()):
                if f"{i}/slot" in npz.files:
                    prefix = f"{i}/"
                    layer.pictures = {key[len(prefix):]: npz[key] for key in npz.files
                                      if key.startswith(prefix) and key != f"{i}/slot"}
                    layer.best = dataclasses.replace(layer.best, slot=npz[f"{i}/slot"].astype(np.int64))
        return partial, meta

    def to_bytes(self) -> bytes:
        """``save`` into bytes (how Ray actors send their partials)."""
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Partial:
        return cls.load(io.BytesIO(data))[0]


def merge_all(partials, k: int) -> Partial:
    """All partials merged (an empty top-``k`` summary when there are none)."""
    total = Partial(k)
    for partial in partials:
        total.absorb(partial)
    return total


def out_of_domain_block(partial: Partial, detector: dict | None, left_out: bool = False) -> dict:
    """summary.json's "out_of_domain": the detector ({"score", "threshold"}, or None for a model without
    one, which gives no verdict), whether rejected images were left out of the numbers, how many were
    rejected, and per image (by name) its score and verdict."""
    if detector is None:
        return {"detector": None, "verdict": "none: this model carries no out-of-domain detector (gates only), "
                                             "so no image has a verdict", "left_out": False, "count": 0, "images": []}
    images = [{"image": n, "value": v.value, "out_of_domain": v.out_of_domain}
              for n, v in sorted(partial.verdicts.items())]
    return {"detector": detector, "verdict": "per image below: out_of_domain = value > threshold",
            "left_out": left_out, "count": sum(i["out_of_domain"] for i in images), "images": images}


def true_classes_block(partial: Partial) -> dict:
    """summary.json's "true_classes": the model's top-1 answer on each image whose true class is known (the
    shipped example scenes, same file name and content), how many there are and how many it gets right."""
    images = [{"image": n, **t} for n, t in sorted(partial.truths.items())]
    return {"known_for": "the shipped example scenes (same file name and content); other images have none",
            "count": len(images), "right": sum(i["right"] for i in images), "images": images}


def summary_dict(partial: Partial, model: dict, detector: dict | None = None, left_out: bool = False,
                 faithfulness: dict | None = None) -> dict:
    """The JSON document written as summary.json (see the module docstring for every number).

    ``detector``: the model's out-of-domain detector as {"score", "threshold"}, None without one;
    ``left_out``: whether the images it rejected were left out (see ``out_of_domain_block``);
    ``faithfulness``: the image set's deletion/insertion block (``explain.faithfulness.set_block``), when run."""
    return {
        **({"faithfulness": faithfulness} if faithfulness is not None else {}),
        "model": model,
        "images": partial.images,
        "skipped": partial.skipped,
        "out_of_domain": out_of_domain_block(partial, detector, left_out),
        "true_classes": true_classes_block(partial),
        "top_k": partial.k,
        "definitions": {
            "vector_length": "L2 norm over the group's C/G channels at one position; before = SGE's input, "
                             "after = SGE's output",
            "score": "max over positions of the after-SGE vector length; row, col = its cell",
            "variance": "per image, population variance (ddof 0) of the group's C/G x H x W values; "
                        "mean and std over images",
            "length_histogram": "bins [e_i, e_i+1), the last closed and also counting larger lengths; "
                                "e_i = sqrt(E_i), E_i = 0, then 10^(j/10 - 6) for j = 0..140 rounded to "
                                "8 significant bits",
            "mask_auc": "mean over images with a mask of the ROC-AUC of the upsampled gate vs the mask",
        },
        "layers": {
            name: {"groups": layer.groups, "channels": layer.channels, "height": layer.height,
                   "width": layer.width,
                   "length_histogram": {"edges": LENGTH_EDGES.tolist(), "before": layer.hist_before.tolist(),
                                        "after": layer.hist_after.tolist()},
                   "per_group": layer.per_group()}
            for name, layer in partial.layers.items()},
    }
