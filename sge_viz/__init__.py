"""sge_viz: see where Spatial Group-wise Enhance networks look.

    from sge_viz import create_model, open_image, analyze
    model = create_model()                        # the shipped default model, sge_resnet_demo_scenes
    result = analyze(model, open_image("assets/scene_wild_01.png"))
"""
from .capture import (
    Analysis,
    GateRecorder,
    LayerCapture,
    LayerGates,
    Prediction,
    analyze,
    analyze_views,
    find_sge_layers,
)
from .errors import SGEVizError
from .io.images import open_image
from .models import (
    LoadedModel,
    ModelConfig,
    SpatialGroupEnhance,
    available_models,
    build_model,
    create_model,
    find_checkpoints,
    load_checkpoint,
)

__all__ = [
    "Analysis", "GateRecorder", "LayerCapture", "LayerGates", "LoadedModel", "ModelConfig", "Prediction",
    "SGEVizError", "SpatialGroupEnhance", "analyze", "analyze_views", "available_models", "build_model",
    "create_model", "find_checkpoints", "find_sge_layers", "load_checkpoint", "open_image",
]
__version__ = "0.2.0"
