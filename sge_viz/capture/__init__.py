"""Capturing gates: hooks on every SGE layer, preprocessing, and ``analyze`` (one forward, plain arrays out)."""
from .analysis import (
    Analysis,
    LayerGates,
    Prediction,
    analyze,
    analyze_views,
    predict,
    run_batch,
    sge_layer_shapes,
    top_k,
)
from .preprocess import center_crop_view, normalise, prepare
from .recorder import GateRecorder, LayerCapture, find_sge_layers

__all__ = [
    "Analysis", "GateRecorder", "LayerCapture", "LayerGates", "Prediction", "analyze", "analyze_views",
    "center_crop_view", "find_sge_layers", "normalise", "predict", "prepare", "run_batch", "sge_layer_shapes", "top_k",
]
