"""The domain verdict: whether an image lies inside what the model was trained on.

One room owns it: the detectors and their scores (``detector``), the features they read off a forward
(``pooling``), and ``Judge``, which every analysis (``analyze``, ``dissect``, ``explain``) wraps around its
one forward to get each image's verdict:

    judge = Judge(loaded.ood)                 # a model's detector; None gives no verdicts
    with judge.watching(loaded.model):        # around the forward the analysis runs anyway
        logits = loaded.model(x)
    verdicts = judge.verdicts(len(x))         # per image a Verdict (score, value, threshold, out_of_domain), or None

``Verdict`` is the typed verdict, ``verdict_text`` its words. The strip drawn on pictures is drawn with the
pictures' text (``sge_viz.viz.verdict.mark``), a room above this one.
"""
from .detector import (
    BLOCKS_NAME,
    OOD_KEY,
    OODDetector,
    StagedDetector,
    describe,
    detector_from_json,
    detector_from_metadata,
)
from .judge import Judge
from .pooling import pooled_outputs
from .verdict import NO_SIGNAL, Verdict, verdict, verdict_json, verdict_text

__all__ = ["BLOCKS_NAME", "NO_SIGNAL", "OOD_KEY", "Judge", "OODDetector", "StagedDetector", "Verdict", "describe",
           "detector_from_json", "detector_from_metadata", "pooled_outputs", "verdict", "verdict_json", "verdict_text"]
