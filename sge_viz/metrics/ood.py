"""The out-of-domain signal: how far an image's pooled features lie from what the model was trained on.

Score (Lee et al. 2018, "A Simple Unified Framework for Detecting Out-of-Distribution Samples"): the
squared Mahalanobis distance of the features entering the classifier (the pooled last feature map, a
vector f of D numbers) to the nearest class mean, with one covariance shared by all classes:

    d(f) = min_c (f - mu_c)^T P (f - mu_c),   P = inverse of the within-class covariance

mu_c and P are measured on held-out in-domain scenes; an image whose d is above the model's threshold
is flagged as out of domain. The parameters travel in the checkpoint's metadata under ``OOD_KEY``.
numpy only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

OOD_KEY = "sge_viz.ood"  # safetensors metadata key holding an OODDetector as JSON
SCORE_NAME = "mahalanobis"


@dataclass(frozen=True)
class OODDetector:
    """Class means (C, D), shared precision matrix (D, D) and the threshold on the distance (>= 0)."""

    means: np.ndarray
    precision: np.ndarray
    threshold: float
    false_alarm: float | None = None  # measured share of in-domain scenes above the threshold
    auroc: float | None = None  # measured in-domain vs out-of-domain AUROC
    name: str = SCORE_NAME

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(B,) squared Mahalanobis distance of features (B, D) to the nearest class mean; >= 0."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.means.shape[1]:
            raise ValueError(f"features must be (B, {self.means.shape[1]}), got {f.shape}")
        d = f[:, None, :] - self.means[None]  # (B, C, D)
        return np.maximum(np.einsum("bcd,de,bce->bc", d, self.precision, d).min(axis=1), 0.0)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "threshold": self.threshold, "false_alarm": self.false_alarm,
                           "auroc": self.auroc, "means": np.round(self.means, 6).tolist(),
                           "precision": [[float(f"{v:.7g}") for v in row] for row in self.precision]})

    @classmethod
    def from_json(cls, text: str) -> OODDetector:
        """Raises ValueError for anything but a well-formed detector."""
        try:
            d = json.loads(text) if isinstance(text, str) else text
            means = np.asarray(d["means"], dtype=np.float64)
            precision = np.asarray(d["precision"], dtype=np.float64)
            threshold = float(d["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable out-of-domain parameters ({exc})") from exc
        if means.ndim != 2 or precision.shape != (means.shape[1], means.shape[1]) or not np.isfinite(threshold):
            raise ValueError(f"out-of-domain parameters of the wrong shape: means {means.shape}, "
                             f"precision {precision.shape}")
        return cls(means, precision, threshold, d.get("false_alarm"), d.get("auroc"), str(d.get("name", SCORE_NAME)))


def fit(features: np.ndarray, labels: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, D) and the shared within-class precision (D, D) of features (N, D) with labels (N,)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    within = features - means[np.searchsorted(classes, labels)]
    cov = np.cov(within.T) + ridge * np.eye(features.shape[1])
    return means, np.linalg.inv(cov)


def verdict(value: float, threshold: float) -> dict:
    """The API's summary of one image: the score, the threshold and whether it is out of domain."""
    return {"score": SCORE_NAME, "value": float(value), "threshold": float(threshold),
            "out_of_domain": bool(value > threshold)}
