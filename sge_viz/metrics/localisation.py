"""Localisation metrics of gate maps against a known object mask."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ..viz.resize import resize_maps


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` (..., N) against one boolean label vector (N,).

    Mann-Whitney form with average ranks for ties, so it equals
    sklearn.metrics.roc_auc_score row by row. NaN when a class is empty.
    """
    positive = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    scores = np.asarray(scores, dtype=np.float64).reshape(*scores.shape[:-1], -1)
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[:-1], np.nan)
    ranks = rankdata(scores, axis=-1)
    return (ranks[..., positive].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def gate_mask_auc(gates: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-group AUC (G,) of gate maps (G, h, w) upsampled to the mask's size, against the mask."""
    up = resize_maps(gates, *mask.shape)
    return roc_auc(up.reshape(up.shape[0], -1), mask.ravel())

