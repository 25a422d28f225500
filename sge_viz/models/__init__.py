"""SGE module, the SGE-ResNet family, the architecture registry, checkpoints and the ``create_model`` door."""
from .checkpoint import read_checkpoint, read_metadata, save_safetensors
from .config import ModelConfig
from .factory import LoadedModel, create_model, find_checkpoints, load_checkpoint
from .registry import DEMO_ARCH, available_models, build_model, infer_arch
from .sge import SpatialGroupEnhance, is_sge_module, reference_gate
from .sources import InputOptions, ModelSource, open_model
from .wrap import wrap_model

__all__ = [
    "DEMO_ARCH", "InputOptions", "LoadedModel", "ModelConfig", "ModelSource", "SpatialGroupEnhance",
    "available_models", "build_model", "create_model", "find_checkpoints", "infer_arch", "is_sge_module",
    "load_checkpoint", "open_model", "read_checkpoint", "read_metadata", "reference_gate", "save_safetensors",
    "wrap_model",
]
