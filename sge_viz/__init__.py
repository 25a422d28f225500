"""sge_viz: see where Spatial Group-wise Enhance networks look."""
from .analysis import Analysis, LayerGates, Prediction, analyze, analyze_views
from .capture import GateRecorder, LayerCapture, find_sge_layers
from .checkpoints import LoadedModel, create_model, find_checkpoints, load_checkpoint
from .config import ModelConfig
from .errors import SGEVizError
from .images import open_image
from .models import available_models, build_model
from .sge import SpatialGroupEnhance

__all__ = [
    "Analysis", "GateRecorder", "LayerCapture", "LayerGates", "LoadedModel", "ModelConfig", "Prediction",
    "SGEVizError", "SpatialGroupEnhance", "analyze", "analyze_views", "available_models", "build_model",
    "create_model", "find_checkpoints", "find_sge_layers", "load_checkpoint", "open_image",
]
__version__ = "0.1.0"
