"""Does a map point at what the network uses? Deletion and insertion curves (Petsiuk et al. 2018), with no mask.

For one image, its explained class and a map (a group's gate, a layer's mean gate, Grad-CAM, a mask):

- the pixels are ranked by the map, upsampled bilinearly to the input size (highest first, ties by position);
- **deletion**: the top k% of pixels are replaced by the *removed* image (by default a Gaussian-blurred copy,
  sigma = 1/8 of the input side) for k = 0, step, 2 step, ..., 100; **insertion**: the top k% are put back
  into the removed image. Each curve is the class's softmax probability at every k;
- the **AUC** of each curve is the trapezoid rule over the removed fraction in [0, 1]; the **gap** is
  insertion AUC minus deletion AUC, in [-1, 1] (> 0: the map's top pixels carry the class);
- the **random band**: the gaps of random pixel orders on the model's example images (``random_band``),
  mean +- 2 SD; a map's **verdict**: "points at the evidence" (gap >= 0.2, >= 0.9 x Grad-CAM's and above the
  band), "above random" (above the band, not that strong), "near random" (inside the band), "points away"
  (below the band).

The curves of every map run batched (one forward per ``batch`` images); 0% deletion and 100% insertion are
the image itself and 100% deletion and 0% insertion the removed image, run once for all maps.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..capture.preprocess import center_crop_view, normalise_batch
from ..errors import SGEVizError
from ..io.examples import known_examples
from ..io.images import open_image
from ..models.loaded import LoadedModel, weights_digest
from ..resize import resize_maps
from .evidence import Evidence, explain

REMOVALS = ("blur", "mean")
AT_EVIDENCE, ABOVE_RANDOM, NEAR_RANDOM, AWAY = ("points at the evidence", "above random", "near random",
                                                "points away")
VERDICTS = (AT_EVIDENCE, ABOVE_RANDOM, NEAR_RANDOM, AWAY)
MIN_GAP = 0.2  # "points at the evidence" needs at least this gap ...
CAM_SHARE = 0.9  # ... and at least this share of Grad-CAM's gap
CACHE_ENV = "SGE_VIZ_CACHE"


@dataclass(frozen=True)
class Removal:
    """How pixels are removed and how finely. ``method``: "blur" (a Gaussian-blurred copy, ``sigma`` x the
    input's shorter side) or "mean" (the image's mean colour); ``step``: the fraction removed per step, in
    (0, 0.5]; 1 / step steps (rounded) from 0 to 1."""

    method: str = "blur"
    sigma: float = 1 / 8
    step: float = 0.05

    def __post_init__(self):
        if self.method not in REMOVALS:
            raise SGEVizError(f"Unknown removal {self.method!r}: use one of {', '.join(REMOVALS)}.")
        if not 0 < self.step <= 0.5:
            raise SGEVizError(f"The removal step must be in (0, 0.5] (a fraction of the pixels), not {self.step}.")
        if not 0 < self.sigma <= 1:
            raise SGEVizError(f"The blur sigma must be in (0, 1] (a fraction of the input side), not {self.sigma}.")

    @property
    def fractions(self) -> np.ndarray:
        """(n,) float64 from 0 to 1: the removed (deleted or inserted) share of pixels at each point."""
        return np.linspace(0.0, 1.0, int(round(1 / self.step)) + 1)

    def describe(self) -> str:
        what = (f"a Gaussian-blurred copy (sigma = {self.sigma:g} x the input side)" if self.method == "blur"
                else "the image's mean colour")
        return (f"pixels replaced by {what}, {self.step:.0%} per step; AUC by the trapezoid rule over the "
                "removed fraction 0..1")


@dataclass
class Curves:
    """One map's deletion and insertion curves: ``deletion``/``insertion`` (n,) float64 class probabilities in
    [0, 1] at ``Removal.fractions``."""

    deletion: np.ndarray
    insertion: np.ndarray
    fractions: np.ndarray

    @property
    def deletion_auc(self) -> float:
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return auc(self.fractions, self.insertion)

    @property
    def gap(self) -> float:
        """Insertion AUC minus deletion AUC, in [-1, 1]."""
        return self.insertion_auc - self.deletion_auc


@dataclass
class Band:
    """The gaps of random pixel orders for one model, input size and removal: ``gaps`` (images x seeds),
    ``low``/``high`` = mean -+ 2 SD."""

    gaps: list[float]
    images: int
    seeds: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.gaps))

    @property
    def low(self) -> float:
        return self.mean - 2 * float(np.std(self.gaps))

    @property
    def high(self) -> float:
        return self.mean + 2 * float(np.std(self.gaps))

    def to_json(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "images": self.images, "seeds": self.seeds,
                "gaps": [float(g) for g in self.gaps]}


@dataclass
class Faithfulness:
    """Deletion and insertion for one image and class: ``curves[name]`` per map (names such as
    "layer3.1 group 5", "layer3.1 mean gate", "Grad-CAM", "mask"), ``verdicts[name]`` in ``VERDICTS``
    (empty without a band), ``road[name]`` (optional, pytorch-grad-cam's ROAD: most/least relevant first
    and combined, changes of the class probability averaged over 10..90% removed)."""

    target: int
    removal: Removal
    curves: dict[str, Curves]
    band: Band | None = None
    verdicts: dict[str, str] = field(default_factory=dict)
    road: dict[str, dict[str, float]] = field(default_factory=dict)
    forwards: int = 0  # images run through the network for the curves
    layer: str = ""  # the SGE layer and focused group of the gate maps, when they are an explained image's
    group: int | None = None

    def to_json(self) -> dict:
        """The ``faithfulness`` block of evidence.json: settings, band and every curve with its AUCs."""
        return {
            "layer": self.layer or None, "group": self.group,
            "removal": asdict(self.removal), "definition": self.removal.describe(),
            "fractions": [float(f) for f in self.removal.fractions],
            "random_band": None if self.band is None else self.band.to_json(),
            "maps": {name: {"deletion": [float(v) for v in c.deletion], "insertion": [float(v) for v in c.insertion],
                            "deletion_auc": c.deletion_auc, "insertion_auc": c.insertion_auc, "gap": c.gap,
                            "verdict": self.verdicts.get(name), "road": self.road.get(name)}
                     for name, c in self.curves.items()},
        }


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid-rule area under ``values`` over ``fractions`` (both (n,)), in [0, 1] for probabilities."""
    return float(np.trapezoid(np.asarray(values, dtype=np.float64), np.asarray(fractions, dtype=np.float64)))


def pixel_order(saliency: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height * width,) int64 pixel indices (row-major), the map's highest first: ``saliency`` (h, w) is
    upsampled bilinearly to (height, width) (a full-size map is used as it is); ties keep row-major order."""
    full = resize_maps(np.asarray(saliency, dtype=np.float32)[None], height, width)[0]
    return np.argsort(-full.ravel(), kind="stable")


def removed_view(view: np.ndarray, removal: Removal) -> np.ndarray:
    """(H, W, 3) uint8: what a removed pixel becomes (see ``Removal``), rounded to an image's values."""
    image = view.astype(np.float32)
    if removal.method == "mean":
        removed = np.broadcast_to(image.mean(axis=(0, 1)), image.shape)
    else:
        sigma = removal.sigma * min(view.shape[:2])
        removed = gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(removed), 0, 255).astype(np.uint8)


def step_masks(order: np.ndarray, fractions: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, height, width) bool: at fraction f, the first round(f x pixels) pixels of ``order``."""
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    counts = np.round(fractions * order.size).astype(np.int64)
    return (rank[None, :] < counts[:, None]).reshape(len(fractions), height, width)


def _probabilities(loaded: LoadedModel, images: torch.Tensor, target: int, batch: int) -> np.ndarray:
    """Class ``target``'s softmax probability for every image of ``images`` (N, C, H, W), ``batch`` at a time."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = images[start:start + batch].to(loaded.device, loaded.dtype)
            out.append(loaded.model(x).float().softmax(dim=1)[:, target].cpu())
    return torch.cat(out).double().numpy()


def curves_for_orders(loaded: LoadedModel, view: np.ndarray, target: int, orders: dict[str, np.ndarray],
                      removal: Removal = Removal(), batch: int = 32) -> tuple[dict[str, Curves], int]:
    """Deletion and insertion curves of ``view`` (H, W, 3) uint8 for class ``target``, one per pixel order
    (each (H * W,) indices, most important first). Returns the curves and the number of images run."""
    if not loaded.config.classifies:
        raise SGEVizError(f"Deletion and insertion need a class score, and {loaded.name} gives none (gates only).")
    height, width = view.shape[:2]
    fractions = removal.fractions
    removed = removed_view(view, removal)
    original = np.asarray(view, dtype=np.uint8)
    inner = fractions[1:-1]  # the ends are the image and the removed image, shared by every map
    images = [original, removed]
    for order in orders.values():
        masks = step_masks(order, inner, height, width)[..., None]
        images += list(np.where(masks, removed, original))  # deletion: the top pixels removed
        images += list(np.where(masks, original, removed))  # insertion: the top pixels put back
    x = normalise_batch(images, loaded.config)
    p = _probabilities(loaded, x, target, batch)
    whole, blank, n = p[0], p[1], len(inner)
    curves = {}
    for i, name in enumerate(orders):
        d, ins = p[2 + 2 * i * n: 2 + (2 * i + 1) * n], p[2 + (2 * i + 1) * n: 2 + (2 * i + 2) * n]
        curves[name] = Curves(np.concatenate([[whole], d, [blank]]), np.concatenate([[blank], ins, [whole]]),
                              fractions)
    return curves, len(images)


def random_band(loaded: LoadedModel, views: Sequence[np.ndarray], removal: Removal = Removal(), seeds: int = 3,
                targets: Sequence[int] | None = None, batch: int = 32) -> Band:
    """The gaps of ``seeds`` random pixel orders per view (each (H, W, 3) uint8 at the input size), for each
    view's top-1 class (or ``targets``). Deterministic: seed s of every view is the same permutation."""
    if not views:
        raise SGEVizError("The random band needs at least one image of the model's input size.")
    gaps = []
    for i, view in enumerate(views):
        size = view.shape[0] * view.shape[1]
        target = targets[i] if targets is not None else top_class(loaded, view)
        orders = {f"seed {s}": np.random.default_rng(s).permutation(size) for s in range(seeds)}
        curves, _ = curves_for_orders(loaded, view, target, orders, removal, batch)
        gaps += [c.gap for c in curves.values()]
    return Band(gaps, len(views), seeds)


def top_class(loaded: LoadedModel, view: np.ndarray) -> int:
    """The top-1 class index of ``view`` (H, W, 3) uint8."""
    x = normalise_batch([view], loaded.config)
    with torch.inference_mode():
        return int(loaded.model(x.to(loaded.device, loaded.dtype)).argmax(dim=1)[0])


def verdict(gap: float, band: Band, cam_gap: float | None) -> str:
    """The words for a map's gap (see the module docstring); ``cam_gap`` None: no Grad-CAM to compare with."""
    if gap < band.low:
        return AWAY
    if gap <= band.high:
        return NEAR_RANDOM
    if gap >= MIN_GAP and (cam_gap is None or gap >= CAM_SHARE * cam_gap):
        return AT_EVIDENCE
    return ABOVE_RANDOM


def cache_dir() -> Path:
    """Where random bands are kept: $SGE_VIZ_CACHE, else ~/.cache/sge_viz."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sge_viz")


_bands: dict[str, Band] = {}


def cached_band(loaded: LoadedModel, views: Sequence[np.ndarray], removal: Removal = Removal(), seeds: int = 3,
                label: str = "examples") -> Band:
    """``random_band`` once per model weights, input size, removal and image set (``label`` names the set; the
    views' bytes are part of the key): kept in memory and in ``cache_dir()`` (a file that cannot be read or
    written is recomputed, never an error)."""
    digest = hashlib.sha256()
    digest.update(weights_digest(loaded.model).encode())
    digest.update(json.dumps([asdict(removal), seeds, list(views[0].shape) if views else []]).encode())
    for view in views:
        digest.update(np.ascontiguousarray(view).tobytes())
    key = digest.hexdigest()[:32]
    if key in _bands:
        return _bands[key]
    path = cache_dir() / "bands" / f"{key}.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        band = Band([float(g) for g in stored["gaps"]], int(stored["images"]), int(stored["seeds"]))
    except (OSError, ValueError, KeyError, TypeError):
        band = random_band(loaded, views, removal, seeds)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**band.to_json(), "set": label}), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass
    _bands[key] = band
    return band


def road_scores(loaded: LoadedModel, view: np.ndarray, target: int, maps: dict[str, np.ndarray],
                percentiles: Sequence[int] = (10, 20, 30, 40, 50, 60, 70, 80, 90)) -> dict[str, dict[str, float]]:
    """ROAD (Rong et al. 2022) by pytorch-grad-cam for each map (upsampled to the input size): the change of
    the class probability with the most / least relevant pixels imputed, averaged over ``percentiles``, and
    the library's combined score (least minus most, halved; higher = more faithful). Its imputation adds
    noise: seeded, so a run repeats."""
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    height, width = view.shape[:2]
    x = normalise_batch([view], loaded.config).to(loaded.device, loaded.dtype)
    targets = [ClassifierOutputSoftmaxTarget(int(target))]
    scores = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, saliency in maps.items():
            cam = resize_maps(np.asarray(saliency, dtype=np.float32)[None], height, width)
            most = float(ROADMostRelevantFirstAverage(list(percentiles))(x, cam, targets, loaded.model)[0])
            least = float(ROADLeastRelevantFirstAverage(list(percentiles))(x, cam, targets, loaded.model)[0])
            scores[name] = {"most_relevant_first": most, "least_relevant_first": least,
                            "combined": (least - most) / 2}
    return scores


def faithfulness(loaded: LoadedModel, view: np.ndarray, target: int, maps: dict[str, np.ndarray],
                 removal: Removal = Removal(), band: Band | None = None, cam_name: str | None = "Grad-CAM",
                 road: bool = False, batch: int = 32) -> Faithfulness:
    """Deletion and insertion curves of every map of ``maps`` (name -> (h, w) float saliency, any scale, higher
    = more important) on ``view`` (H, W, 3) uint8 at the model's input size, for class ``target``; verdicts
    when a ``band`` is given (against ``maps[cam_name]``'s gap when that map is present); ROAD when ``road``."""
    height, width = view.shape[:2]
    orders = {name: pixel_order(m, height, width) for name, m in maps.items()}
    curves, forwards = curves_for_orders(loaded, view, target, orders, removal, batch)
    verdicts = {}
    if band is not None:
        cam_gap = curves[cam_name].gap if cam_name in curves else None
        verdicts = {name: verdict(c.gap, band, cam_gap) for name, c in curves.items()}
    result = Faithfulness(target, removal, curves, band, verdicts, forwards=forwards)
    if road:
        result.road = road_scores(loaded, view, target, maps)
    return result


def views_of(loaded: LoadedModel, paths: Sequence[str | Path]) -> list[np.ndarray]:
    """Image files cropped to the model's input as ``explain`` crops them, each (S, S, 3) uint8; SGEVizError
    for a file that cannot be read."""
    config = loaded.config
    return [center_crop_view(open_image(p), config.resize_size, config.input_size) for p in paths]


def example_views(loaded: LoadedModel, limit: int = 8) -> list[np.ndarray]:
    """Up to ``limit`` of the shipped examples this model knows (``known_examples``), cropped (``views_of``);
    [] when it knows none."""
    return views_of(loaded, known_examples(loaded.config)[:limit])


def example_band(loaded: LoadedModel, removal: Removal = Removal(), limit: int = 8, seeds: int = 3) -> Band | None:
    """The random band on the model's example images (``example_views``), cached (``cached_band``); None when
    the model has no examples of its own (give ``random_band`` images of yours)."""
    views = example_views(loaded, limit)
    return cached_band(loaded, views, removal, seeds, label="examples") if views else None


def maps_for(evidence: Evidence, layer: str | None = None, group: int | None = None,
             mask: np.ndarray | None = None) -> tuple[str, int, dict[str, np.ndarray]]:
    """The maps judged for one explained image: the focused ``group``'s gate (default: the group that
    contributes most to the class) and the mean gate of ``layer`` (default: the last SGE layer), Grad-CAM,
    and the item mask (S, S) bool when one is known. Returns (layer, group, {name: map})."""
    layer = layer or evidence.layers[-1]
    if layer not in evidence.gates:
        raise SGEVizError(f"No SGE layer {layer!r}: this model's are {', '.join(evidence.layers)}.")
    gates = evidence.gates[layer]
    group = evidence.ranked(layer)[0] if group is None else int(group)
    if not 0 <= group < len(gates):
        raise SGEVizError(f"{layer} has groups 0 to {len(gates) - 1}, not {group}.")
    maps = {f"{layer} group {group}": gates[group], f"{layer} mean gate": gates.mean(axis=0),
            "Grad-CAM": evidence.cam}
    if mask is not None:
        maps["mask"] = np.asarray(mask, dtype=np.float32)
    return layer, group, maps


def evidence_faithfulness(loaded: LoadedModel, evidence: Evidence, layer: str | None = None,
                          group: int | None = None, removal: Removal = Removal(), band: Band | None = None,
                          mask: np.ndarray | None = None, road: bool = False) -> Faithfulness:
    """``faithfulness`` of the maps of ``maps_for`` on an explained image, for its explained class (its
    ``layer`` and ``group`` say which gate maps were judged)."""
    layer, group, maps = maps_for(evidence, layer, group, mask)
    result = faithfulness(loaded, evidence.image, evidence.target.index, maps, removal, band, road=road)
    result.layer, result.group = layer, group
    return result


def image_gaps(loaded: LoadedModel, view: np.ndarray, removal: Removal = Removal(), batch: int = 32) -> dict:
    """One image of an image set, explained for its top-1 class: the gap of every SGE layer's mean gate, of
    each group's gate of the last SGE layer, and of Grad-CAM. ``view``: (S, S, 3) uint8 at the input size.
    Returns {"class": index, "cam": gap, "layers": {layer: gap}, "group_layer": layer, "groups": [gap, ...]}."""
    ev = explain(loaded, view, ablation=False)
    height, width = ev.image.shape[:2]
    last = ev.layers[-1]
    orders = {f"layer {layer}": pixel_order(ev.gates[layer].mean(axis=0), height, width) for layer in ev.layers}
    orders.update({f"group {g}": pixel_order(gate, height, width) for g, gate in enumerate(ev.gates[last])})
    orders["cam"] = pixel_order(ev.cam, height, width)
    curves, _ = curves_for_orders(loaded, ev.image, ev.target.index, orders, removal, batch)
    return {"class": ev.target.index, "cam": curves["cam"].gap,
            "layers": {layer: curves[f"layer {layer}"].gap for layer in ev.layers}, "group_layer": last,
            "groups": [curves[f"group {g}"].gap for g in range(len(ev.gates[last]))]}


def set_block(records: dict[str, dict], removal: Removal, band: Band | None) -> dict:
    """summary.json's "faithfulness" of an image set from ``image_gaps`` records (by image name): per SGE
    layer (mean gate), per group of the last layer, and for Grad-CAM, the mean gap +- SE and the share of
    images per verdict (when there is a band); the groups ranked by mean gap."""
    names = sorted(records)

    def judged(gaps: list[float], cams: list[float]) -> dict:
        values = np.asarray(gaps, dtype=np.float64)
        out = {"mean_gap": float(values.mean()),
               "se": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None,
               "positive": float((values > 0).mean())}
        if band is not None:
            said = [verdict(g, band, c) for g, c in zip(values, cams)]
            out["verdicts"] = {v: said.count(v) / len(said) for v in VERDICTS}
        return out

    if not names:
        return {"images": 0}
    cams = [records[n]["cam"] for n in names]
    layers = list(records[names[0]]["layers"])
    last = records[names[0]]["group_layer"]
    groups = len(records[names[0]]["groups"])
    per_group = [{"group": g, **judged([records[n]["groups"][g] for n in names], cams)} for g in range(groups)]
    return {
        "images": len(names), "removal": asdict(removal), "definition": removal.describe(),
        "explained": "each image's top-1 class; gap = insertion AUC - deletion AUC",
        "random_band": None if band is None else band.to_json(),
        "cam": judged(cams, [None] * len(cams)),
        "layers": {layer: judged([records[n]["layers"][layer] for n in names], cams) for layer in layers},
        "group_layer": last, "groups": per_group,
        "ranking": [g["group"] for g in sorted(per_group, key=lambda g: -g["mean_gap"])],
    }
