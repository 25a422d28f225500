"""``Judge``: the out-of-domain verdicts of one forward's images, from the features its detector reads off it."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from torch import nn

from .detector import OODDetector, StagedDetector
from .pooling import pooled_outputs
from .verdict import Verdict, verdict


class Judge:
    """Collects what ``detector`` reads (named modules' outputs averaged over positions) during the forwards run
    inside ``watching``, then gives each image's verdict. A None detector (a model without a measured signal,
    or gates only) gives no verdicts and adds no hooks."""

    def __init__(self, detector: OODDetector | StagedDetector | None):
        self.detector = detector
        self.pooled: dict[str, list[np.ndarray]] = {name: [] for name in detector.modules} if detector else {}

    @contextmanager
    def watching(self, model: nn.Module, active: Callable[[], bool] = lambda: True) -> Iterator[None]:
        """Read the detector's features off every forward run while open (``active``: whether a forward is the
        caller's, for a model that serves other threads)."""
        if self.detector is None:
            yield
            return
        with pooled_outputs(model, list(self.pooled), self.pooled, active=active):
            yield

    def verdicts(self, count: int) -> list[Verdict | None]:
        """One ``Verdict`` per image of the watched forwards, in order; ``count`` Nones without a detector."""
        if self.detector is None:
            return [None] * count
        values = self.detector.scores({name: np.concatenate(parts) for name, parts in self.pooled.items()})
        return [verdict(v, self.detector.threshold, self.detector.name) for v in values]
