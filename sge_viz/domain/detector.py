"""The out-of-domain signal: how far an image's pooled features lie from what the model was trained on.

Score (Lee et al. 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples"): the
squared Mahalanobis distance of the features entering the classifier (the pooled last feature map, a
vector f of D numbers) to the nearest class mean, with one covariance shared by all classes:

    d(f) = min_c (f - mu_c)^T P (f - mu_c),   P = inverse of the within-class covariance

mu_c and P are measured on held-out in-domain scenes; an image whose d is above the model's threshold
is flagged as out of domain. The parameters travel in the checkpoint's metadata under ``OOD_KEY``.

A second score, ``StagedDetector`` ("stages + energy"), is for models trained with photographs as
backgrounds, whose last features no longer set a photo apart from a scene: the same distance on each
stage's output averaged over positions, d_s, and the energy of the logits, E = -logsumexp(logits),
each put on one scale on held-out in-domain scenes and added:

    score = sum_s log(d_s / m_s) + (E - mu_E) / sigma_E

m_s: the median of d_s on the fit scenes; mu_E, sigma_E: the mean and std of E there. A detector names
the modules whose outputs it reads (``modules``; "" is the model itself, its output the logits) and
scores the outputs averaged over positions (``scores``).

The same form over other modules, ``BLOCKS_NAME`` ("blocks + gates + energy"), is for a model whose
training scenes put items on photographs: every residual block's output, plus the last SGE layer's gates
(its ``sig`` module, averaged over positions: one mean gate per group). A photo without an item looks
like a photo background at every stage; the last gates, which enhance the item, and the energy say that
no item is there. An output of (B * G, 1) per batch of B images (a gate read per group) is taken as
(B, G). numpy only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import SGEVizError

OOD_KEY = "sge_viz.ood"  # safetensors metadata key holding an OODDetector as JSON
SCORE_NAME = "mahalanobis"
STAGED_NAME = "stages + energy"
BLOCKS_NAME = "blocks + gates + energy"
POOLED = "avgpool"  # the module whose output, averaged, is the features entering the classifier
LOGITS = ""  # the model itself: its output is the logits


def nearest_distance(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """(B,) squared Mahalanobis distance of features (B, D) to the nearest of the class means (C, D); >= 0."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != means.shape[1]:
        raise ValueError(f"features must be (B, {means.shape[1]}), got {f.shape}")
    d = f[:, None, :] - means[None]  # (B, C, D)
    return np.maximum(np.einsum("bcd,de,bce->bc", d, precision, d).min(axis=1), 0.0)


def energy(logits: np.ndarray) -> np.ndarray:
    """(B,) -logsumexp of logits (B, classes): higher = less like any class."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1)
    return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


@dataclass(frozen=True)
class OODDetector:
    """Class means (C, D), shared precision matrix (D, D) and the threshold on the distance (>= 0)."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    false_alarm: float | None = None  # measured share of in-domain scenes above the threshold
    auroc: float | None = None  # measured in-domain vs out-of-domain AUROC
    name: str = SCORE_NAME

    modules = (POOLED,)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(B,) squared Mahalanobis distance of features (B, D) to the nearest class mean; >= 0."""
        return nearest_distance(features, self.means, self.precision)

    def scores(self, pooled: dict[str, np.ndarray]) -> np.ndarray:
        """(B,) the score from the outputs of ``modules`` averaged over positions, {name: (B, D)}."""
        return self.distances(pooled[POOLED])

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "threshold": self.threshold, "false_alarm": self.false_alarm,
                           "auroc": self.auroc, **_stats_to_json(self.means, self.precision)})

    @classmethod
    def from_json(cls, text: str) -> OODDetector:
        """Raises ValueError for anything but a well-formed detector."""
        try:
            d = json.loads(text) if isinstance(text, str) else text
            threshold = float(d["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable out-of-domain parameters ({exc})") from exc
        means, precision = _stats_from_json(d, "out-of-domain parameters")
        if not np.isfinite(threshold):
            raise ValueError(f"out-of-domain threshold {threshold} is not a number")
        return cls(means, precision, threshold, d.get("false_alarm"), d.get("auroc"), str(d.get("name", SCORE_NAME)))


def _stats_to_json(means: np.ndarray, precision: np.ndarray) -> dict:
    """Class means (C, D) and precision (D, D) as JSON lists: means to 6 decimals, precision to 7 digits."""
    return {"means": np.round(means, 6).tolist(), "precision": [[float(f"{v:.7g}") for v in row] for row in precision]}


def _stats_from_json(d: dict, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(means (C, D), precision (D, D)) of ``_stats_to_json``'s form; ValueError naming ``what`` otherwise."""
    try:
        means = np.asarray(d["means"], dtype=np.float64)
        precision = np.asarray(d["precision"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable out-of-domain parameters ({exc})") from exc
    if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]):
        raise ValueError(f"{what} of the wrong shape: means {means.shape}, precision {precision.shape}")
    return means, precision


def fit(features: np.ndarray, labels: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, D) and the shared within-class precision (D, D) of features (N, D) with labels (N,)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    within = features - means[np.searchsorted(classes, labels)]
    cov = np.cov(within.T) + ridge * np.eye(features.shape[1])
    return means, np.linalg.inv(cov)


@dataclass(frozen=True)
class StageTerm:
    """One stage of a StagedDetector: class means (C, D) and shared precision (D, D) of the module's
    output averaged over positions, and ``scale`` (> 0), the median distance on the fit scenes."""

    module: str
    means: np.ndarray
    precision: np.ndarray
    scale: float

    def to_dict(self) -> dict:
        return {"module": self.module, "scale": self.scale, **_stats_to_json(self.means, self.precision)}


@dataclass(frozen=True)
class StagedDetector:
    """The "stages + energy" score of the module docstring, with its threshold (higher = out of domain)."""

    terms: tuple[StageTerm, ...]
    energy_mean: float
    energy_std: float
    threshold: float
    false_alarm: float | None = None
    auroc: float | None = None
    name: str = STAGED_NAME

    @property
    def modules(self) -> tuple[str, ...]:
        return (*(t.module for t in self.terms), LOGITS)

    def parts(self, pooled: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{module or "energy": (B,)} each term of the score, already on its common scale."""
        batch = len(pooled[LOGITS])
        out = {t.module: np.log(np.maximum(nearest_distance(per_image(pooled[t.module], batch), t.means,
                                                            t.precision), 1e-300) / t.scale)
               for t in self.terms}
        out["energy"] = (energy(pooled[LOGITS]) - self.energy_mean) / self.energy_std
        return out

    def scores(self, pooled: dict[str, np.ndarray]) -> np.ndarray:
        """(B,) the score from the outputs of ``modules`` averaged over positions, {name: (B, D)}."""
        return np.sum(list(self.parts(pooled).values()), axis=0)

    def with_threshold(self, threshold: float, false_alarm: float | None = None,
                       auroc: float | None = None) -> StagedDetector:
        return StagedDetector(self.terms, self.energy_mean, self.energy_std, threshold, false_alarm, auroc, self.name)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "threshold": self.threshold, "false_alarm": self.false_alarm,
                           "auroc": self.auroc, "energy": {"mean": self.energy_mean, "std": self.energy_std},
                           "terms": [t.to_dict() for t in self.terms]})

    @classmethod
    def from_json(cls, text: str) -> StagedDetector:
        """Raises ValueError for anything but a well-formed detector."""
        try:
            d = json.loads(text) if isinstance(text, str) else text
            stages = [(str(t["module"]), float(t["scale"]), t) for t in d["terms"]]
            mean, std, threshold = float(d["energy"]["mean"]), float(d["energy"]["std"]), float(d["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable out-of-domain parameters ({exc})") from exc
        terms = tuple(StageTerm(module, *_stats_from_json(t, f"out-of-domain stage {module!r}"), scale)
                      for module, scale, t in stages)
        for t in terms:
            if not t.scale > 0:
                raise ValueError(f"out-of-domain stage {t.module!r} has scale {t.scale}; it must be > 0")
        if not terms or not std > 0 or not all(np.isfinite([mean, threshold])):
            raise ValueError("out-of-domain parameters need stages, a positive energy std and a finite threshold")
        return cls(terms, mean, std, threshold, d.get("false_alarm"), d.get("auroc"), str(d.get("name", STAGED_NAME)))


def per_image(output: np.ndarray, batch: int) -> np.ndarray:
    """(batch, D) from a module's averaged output: (batch, D) as it is, (batch * G, 1) (gates read per group,
    like SGE's ``sig``) as (batch, G). ValueError when the rows are not a multiple of ``batch``."""
    output = np.asarray(output)
    if output.shape[0] == batch:
        return output
    if batch == 0 or output.shape[0] % batch:
        raise ValueError(f"a module output of {output.shape[0]} rows does not fit {batch} images")
    return output.reshape(batch, -1)


def fit_staged(pooled: dict[str, np.ndarray], labels: np.ndarray, stages: list[str],
               name: str = STAGED_NAME) -> StagedDetector:
    """A StagedDetector (threshold 0: calibrate it) from the fit scenes' outputs averaged over positions,
    {module: (N, D) or (N * G, 1)} for every module in ``stages`` and LOGITS, and their labels (N,).
    ``name``: STAGED_NAME (``stages`` = the stages) or BLOCKS_NAME (the blocks and the last gates)."""
    terms = []
    batch = len(pooled[LOGITS])
    for module in stages:
        features = per_image(pooled[module], batch)
        means, precision = fit(features, labels)
        terms.append(StageTerm(module, means, precision, float(np.median(nearest_distance(features, means,
                                                                                           precision)))))
    e = energy(pooled[LOGITS])
    return StagedDetector(tuple(terms), float(e.mean()), float(e.std()), 0.0, name=name)


def detector_from_json(text: str) -> OODDetector | StagedDetector:
    """The detector a checkpoint's ``OOD_KEY`` metadata holds, by its name; ValueError when unusable."""
    try:
        name = json.loads(text).get("name", SCORE_NAME)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"unreadable out-of-domain parameters ({exc})") from exc
    return StagedDetector.from_json(text) if name in (STAGED_NAME, BLOCKS_NAME) else OODDetector.from_json(text)


def detector_from_metadata(metadata: dict[str, str], path) -> OODDetector | StagedDetector | None:
    """The out-of-domain detector a checkpoint's metadata carries (``OOD_KEY``), or None; a broken one is an
    SGEVizError naming the file ``path``."""
    if OOD_KEY not in metadata:
        return None
    try:
        return detector_from_json(metadata[OOD_KEY])
    except ValueError as exc:
        raise SGEVizError(f"Checkpoint {path} has unusable '{OOD_KEY}' metadata ({exc}): measure it again with "
                          "`python -m training.ood` (from a source checkout) or remove the key.") from exc


def describe(score: str) -> str:
    """A reader's name for a stored score (``verdict``'s "score"): what the number is."""
    return {SCORE_NAME: "Mahalanobis distance of the pooled features",
            STAGED_NAME: "out-of-domain score (each stage's Mahalanobis distance plus the logits' energy, "
                         "0 = a typical in-domain scene)",
            BLOCKS_NAME: "out-of-domain score (the Mahalanobis distance of each residual block's output and of "
                         "the last SGE layer's mean gates, plus the logits' energy; 0 = a typical in-domain "
                         "scene)"}.get(score, f"{score} score")
