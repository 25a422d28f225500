"""SGE module, the SGE-ResNet family, the architecture registry, checkpoints and ``create_model`` (a
registered name or a checkpoint file to a ``LoadedModel``). A model from any source, the user's code
included: ``sge_viz.sources``."""
from .checkpoint import read_checkpoint, read_metadata, save_safetensors
from .config import ModelConfig
from .factory import LoadedModel, create_model, find_checkpoints, load_checkpoint
from .registry import DEMO_ARCH, available_models, build_model, infer_arch
from .sge import SpatialGroupEnhance, is_sge_module, reference_gate

__all__ = [
    "DEMO_ARCH", "LoadedModel", "ModelConfig", "SpatialGroupEnhance",
    "available_models", "build_model", "create_model", "find_checkpoints", "infer_arch", "is_sge_module",
    "load_checkpoint", "read_checkpoint", "read_metadata", "reference_gate", "save_safetensors",
]
