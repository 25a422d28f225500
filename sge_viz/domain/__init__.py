"""The domain verdict: whether an image lies inside what the model was trained on.

One room owns it: the detectors and their scores (``detector``), the features they read off a forward
(``pooling``), and ``Judge``, which every analysis (``analyze``, ``dissect``, ``explain``) wraps around its
one forward to get each image's verdict:

    judge = Judge(loaded.ood)                 # a model's detector; None gives no verdicts
    with judge.watching(loaded.model):        # around the forward the analysis runs anyway
        logits = loaded.model(x)
    verdicts = judge.verdicts(len(x))         # per image {"score", "value", "threshold", "out_of_domain"}, or None

How a verdict is drawn on a picture is the pictures' business (``sge_viz.viz.verdict``).
"""
from .detector import (
    BLOCKS_NAME,
    OOD_KEY,
    OODDetector,
    StagedDetector,
    describe,
    detector_from_json,
    detector_from_metadata,
    verdict,
)
from .judge import Judge
from .pooling import pooled_outputs

__all__ = ["BLOCKS_NAME", "OOD_KEY", "Judge", "OODDetector", "StagedDetector", "describe", "detector_from_json",
           "detector_from_metadata",
           "pooled_outputs", "verdict"]
