"""sge_viz: see where Spatial Group-wise Enhance networks look.

    from sge_viz import create_model, open_image, analyze
    model = create_model()                        # the shipped default model, sge_resnet_demo_scenes
    result = analyze(model, open_image("assets/scene_wild_01.png"))

The names below are imported on first use (PEP 562), so ``import sge_viz`` (and ``sge-viz --help``)
does not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_WHERE = {
    **dict.fromkeys(("Analysis", "GateRecorder", "LayerCapture", "LayerGates", "Prediction", "analyze",
                     "analyze_views", "find_sge_layers"), ".capture"),
    "SGEVizError": ".errors",
    "open_image": ".io.images",
    **dict.fromkeys(("LoadedModel", "ModelConfig", "SpatialGroupEnhance", "available_models", "build_model",
                     "create_model", "find_checkpoints", "load_checkpoint"), ".models"),
    **dict.fromkeys(("InputOptions", "ModelSource", "open_model", "wrap_model"), ".sources"),
}
__all__ = sorted([*_WHERE, "serve"])


def serve(models, **kwargs):
    """Open the app on your own models (``wrap_model`` results), first in its menu: ``sge_viz.serve([model])``.
    Keyword arguments: host, port, share, prevent_thread_lock (see ``sge_viz.app.server.serve_models``)."""
    from .app.server import serve_models

    return serve_models(models, **kwargs)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sge_viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .capture import (  # noqa: F401
        Analysis,
        GateRecorder,
        LayerCapture,
        LayerGates,
        Prediction,
        analyze,
        analyze_views,
        find_sge_layers,
    )
    from .errors import SGEVizError  # noqa: F401
    from .io.images import open_image  # noqa: F401
    from .models import (  # noqa: F401
        LoadedModel,
        ModelConfig,
        SpatialGroupEnhance,
        available_models,
        build_model,
        create_model,
        find_checkpoints,
        load_checkpoint,
    )
    from .sources import InputOptions, ModelSource, open_model, wrap_model  # noqa: F401
