"""sge_viz: see where Spatial Group-wise Enhance networks look.

    from sge_viz import create_model, open_image, analyze
    model = create_model()                        # the shipped demo model
    result = analyze(model, open_image("assets/scene_01.png"))
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
    open_model,
    wrap_model,
)

__all__ = [
    "Analysis", "GateRecorder", "LayerCapture", "LayerGates", "LoadedModel", "ModelConfig", "Prediction",
    "SGEVizError", "SpatialGroupEnhance", "analyze", "analyze_views", "available_models", "build_model",
    "create_model", "find_checkpoints", "find_sge_layers", "load_checkpoint", "open_image", "open_model",
    "wrap_model",
]
__version__ = "0.2.0"


def serve(models, **kwargs):
    """Open the app on your own models (``wrap_model`` results), first in its menu: ``sge_viz.serve([model])``.
    Keyword arguments: host, port, share, prevent_thread_lock (see ``sge_viz.app.server.serve_models``)."""
    from .app.server import serve_models

    return serve_models(models, **kwargs)
