"""Find, read, verify and load checkpoints: official SGE-ResNet files, bare state_dicts, safetensors.

Reading never unpickles arbitrary objects (``weights_only=True``) and loading is
strict: any missing, unexpected or wrongly shaped key is an error, so random
weights are never used by accident.
"""
from __future__ import annotations

import json
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import SGEVizError
from ..sniff import describe_bytes
from .config import ModelConfig
from .registry import ARCHS, available_models, build_model, infer_arch

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors")
# Metadata key under which a safetensors file stores its ModelConfig as JSON.
CONFIG_KEY = "sge_viz.config"

@dataclass
class CheckpointContents:
    """What a checkpoint file holds, read but not yet loaded into a model."""

    state_dict: dict[str, torch.Tensor]
    arch: str | None  # as written in the file, when it says
    config: ModelConfig | None  # full config, when the file carries one (our safetensors)
    metadata: dict[str, str]
    notes: list[str] = field(default_factory=list)  # what reading changed (a prefix recognised and stripped)


# --- reading ----------------------------------------------------------------

def read_checkpoint(path: str | Path, strip_prefix: str | None = None) -> CheckpointContents:
    """Read any supported checkpoint form into a plain state_dict without the ``module.`` prefix.

    ``strip_prefix``: None recognises an mmdetection-style ``backbone.`` prefix (``backbone_only``); ""
    keeps every key as saved; any other string keeps only the keys that start with it, without it (an
    error when no key has it)."""
    path = Path(path)
    if not path.is_file():
        raise SGEVizError(f"Checkpoint {path} does not exist: give the path of a .pth/.pth.tar/.safetensors file.")
    if path.stat().st_size == 0:
        raise SGEVizError(f"Checkpoint {path} is empty (0 bytes): download or save it again.")
    kind = sniff_checkpoint(path)
    if kind == "safetensors":
        state_dict, metadata = _read_safetensors(path)
        config = _config_from_metadata(metadata, path)
        arch = config.arch if config else metadata.get("arch")
    elif kind == "torch":
        obj = _read_torch_file(path)
        state_dict, arch, metadata = _unwrap(obj, path)
        config = None
    else:
        raise SGEVizError(f"{path} is not a checkpoint: {_describe_non_checkpoint(path)}, not a PyTorch "
                          "(.pth/.pth.tar) or safetensors file. Give the path of the model's weights file.")
    state_dict = _strip_prefix(state_dict)
    notes = []
    if strip_prefix is None:
        state_dict, notes = backbone_only(state_dict)
    elif strip_prefix:
        if not any(k.startswith(strip_prefix) for k in state_dict):
            raise SGEVizError(f"--strip-prefix {strip_prefix!r}: no key of {path} starts with it (keys look like "
                              f"{', '.join(list(state_dict)[:3])}).")
        state_dict = {k[len(strip_prefix):]: v for k, v in state_dict.items() if k.startswith(strip_prefix)}
    _check_tensors(state_dict, path)
    _check_finite(state_dict, path)
    return CheckpointContents(state_dict, arch, config, metadata, notes)


def sniff_checkpoint(path: Path) -> str | None:
    """"torch" (zip or legacy pickle), "safetensors", or None, from the first bytes: content decides, not the name."""
    with path.open("rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip
        return "torch"
    # Before the pickle test: a safetensors header length whose low byte is 0x80 starts like a pickle.
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 2**27:
        return "safetensors"  # u64 header length, then the JSON header (the reader checks the rest)
    if head[:1] == b"\x80":  # legacy torch.save: a pickle of protocol >= 2
        return "torch"
    return None


def _describe_non_checkpoint(path: Path) -> str:
    with path.open("rb") as f:
        return describe_bytes(f.read(512)).replace("match no known format", "match no known checkpoint format")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SGEVizError(f"Checkpoint {path} is not a readable safetensors file ({exc}); "
                          "it may be truncated or corrupt: save or download it again.") from exc
    return tensors, metadata


# Why a TorchScript file or module cannot be shown, and what to pass instead.
TORCHSCRIPT = ("TorchScript (torch.jit.script or torch.jit.trace) runs compiled code: the SGE modules inside "
               "cannot be hooked, so no gate can be read")


def is_torchscript_file(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with ``constants.pkl`` and
    compiled ``code/``), which a plain ``torch.save`` zip never holds."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _read_torch_file(path: Path) -> object:
    if is_torchscript_file(path):
        raise SGEVizError(f"Checkpoint {path} is a TorchScript module. {TORCHSCRIPT}. Pass the Python model "
                          "with --model-def FILE.py:CALLABLE and its weights with --checkpoint (save them with "
                          "torch.save(model.state_dict(), ...)).")
    try:
        # A file object, not the path: torch.load picks a reader by file name (".safetensors"), and the
        # content was already sniffed as a torch file.
        with path.open("rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # the weights-only unpickler met a class or function reference
            raise SGEVizError(
                f"Checkpoint {path} was refused: it contains Python objects other than tensors and plain "
                "containers (a whole pickled model?), and loading it could run code. Re-save only the weights "
                "(torch.save(model.state_dict(), ...)) from a source you trust and pass your model's code with "
                "--model-def FILE.py:CALLABLE; or, on the command line only, --trust-pickle loads it if you "
                "trust the file.") from exc
        raise SGEVizError(
            f"Checkpoint {path} was refused: it is not a pickle that weights-only loading accepts (damaged, "
            "or written with pickle features a plain torch.save never uses), so it was not unpickled. "
            "Re-save only the weights with torch.save(model.state_dict(), ...).") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, UnicodeDecodeError,
            AttributeError, IndexError, KeyError, TypeError, MemoryError) as exc:
        raise SGEVizError(f"Checkpoint {path} could not be read as a PyTorch file ({type(exc).__name__}: "
                          f"{str(exc)[:200]}). It may be truncated, corrupt or not a checkpoint at all: "
                          "download or save it again.") from exc


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str | None, dict[str, str]]:
    """Official dict {'arch', 'state_dict', ...}, a {'model': state_dict} dict, or a bare state_dict."""
    if not isinstance(obj, dict):
        raise SGEVizError(f"Checkpoint {path} holds a {type(obj).__name__}, not a state_dict or a training "
                          "checkpoint dict: save model.state_dict() instead.")
    arch = None
    meta: dict[str, str] = {}
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
        for key in ("epoch", "acc", "best_acc", "best_acc1"):  # the official files: epoch, acc, best_acc
            if key in obj:
                meta[key] = str(obj[key].item() if isinstance(obj[key], torch.Tensor) else obj[key])
        obj = obj["state_dict"]
    elif "model" in obj and isinstance(obj["model"], dict):  # e.g. torchvision's and DeiT's training scripts
        obj = obj["model"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or len(tensors) != len(obj) or not all(isinstance(k, str) for k in obj):
        raise SGEVizError(f"Checkpoint {path} is not a state_dict: expected a mapping of parameter names to "
                          "tensors (or the official dict with 'arch' and 'state_dict').")
    return tensors, arch, meta


def backbone_only(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An mmdetection / mmpretrain-style state_dict (a ResNet under ``backbone.``, no ResNet keys at the top)
    reduced to its backbone without the prefix, with a note saying so; any other is returned as it is."""
    if any(k.startswith(("conv1.", "layer1.")) for k in state_dict) or \
            not any(k.startswith("backbone.layer1.") for k in state_dict):
        return state_dict, []
    left = sum(not k.startswith("backbone.") for k in state_dict)
    return ({k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")},
            [f"Recognised a 'backbone.' prefix (mmdetection / mmpretrain style): the backbone was loaded and "
             f"{left} other keys (neck, heads) were left out (--strip-prefix '' keeps every key)."])


def _strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _check_tensors(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Only dense real tensors: sparse, quantized, complex or meta tensors are no model weights here."""
    bad = [f"{k} ({v.dtype}, {v.layout})" for k, v in state_dict.items()
           if v.layout != torch.strided or v.is_complex() or v.is_quantized or v.is_meta
           or not (v.is_floating_point() or v.dtype in _INT_DTYPES)]
    if bad:
        raise SGEVizError(f"Checkpoint {path} holds tensors no SGE-ResNet has: {', '.join(bad[:5])}. "
                          "Is it a model checkpoint? Re-save it with torch.save(model.state_dict(), ...).")


_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_finite(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise SGEVizError(f"Checkpoint {path} contains NaN or Inf values in {shown}: the weights are broken "
                          "(a diverged training run?); use another checkpoint.")


def _config_from_metadata(metadata: dict[str, str], path: Path) -> ModelConfig | None:
    if CONFIG_KEY not in metadata:
        return None
    try:
        config = ModelConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SGEVizError(f"Checkpoint {path} has unreadable '{CONFIG_KEY}' metadata ({exc}).") from exc
    problem = _config_problem(config)
    if problem:
        raise SGEVizError(f"Checkpoint {path} carries an unusable model config: {problem}. "
                          "Re-save it with sge_viz's save_safetensors.")
    return config


def _config_problem(config: ModelConfig) -> str | None:
    """Why a config read from a file cannot be served (it sizes every request's tensors), or None."""
    if not (8 <= config.height <= 1024 and 8 <= config.width <= 1024):
        return f"input_size {config.input_size} is outside 8..1024"
    side = max(config.height, config.width)
    if config.resize_size != 0 and not side <= config.resize_size <= 4 * side:
        return f"resize_size {config.resize_size} is not 0 (whole image) or between input_size and 4x input_size"
    if config.classifies and not 1 <= config.num_classes <= 100_000:
        return f"num_classes {config.num_classes} is outside 1..100000"
    if config.class_names and len(config.class_names) != config.num_classes:
        return f"{len(config.class_names)} class names for {config.num_classes} classes"
    if config.channels not in (1, 3) or len(config.mean) != config.channels or \
            len(config.std) != config.channels or not all(math.isfinite(v) for v in config.mean):
        return "channels must be 1 or 3, and mean and std one finite number per channel"
    if not all(math.isfinite(v) and v > 0 for v in config.std):
        return "every std must be positive"
    return None


# --- architecture -----------------------------------------------------------

def load_module(path: Path) -> tuple[nn.Module, ModelConfig, CheckpointContents]:
    """A checkpoint file as a ready network, in one step: read, checked against its architecture, built,
    loaded strictly and run once (``verify_forward``). Returns the module (CPU, float32), its config and what
    the file held (metadata, notes); SGEVizError says what is wrong with the file."""
    contents = read_checkpoint(path)
    model, config = build_for(contents, path)
    load_strict(model, contents.state_dict, path, config.arch)
    verify_forward(model, config, path)
    return model, config, contents


def build_for(contents: CheckpointContents, path: Path, use_sge: bool = True) -> tuple[nn.Module, ModelConfig]:
    """The checkpoint's network (CPU, float32) with uninitialised weights, and its config: every caller
    loads the file into it strictly (``load_strict``), so the network is built once, with no random init."""
    skeleton, _, config = _skeleton(contents, path, use_sge)
    return skeleton.to_empty(device="cpu"), config


def check_arch(contents: CheckpointContents, path: Path, use_sge: bool = True) -> tuple[str, ModelConfig]:
    """The checkpoint's architecture name and config (the file's own, else its architecture's default for its
    weights), checked to fit; SGEVizError otherwise.

    Only a skeleton on the meta device is built, so this costs no weight memory.
    """
    _, arch_name, config = _skeleton(contents, path, use_sge)
    return arch_name, config


def _skeleton(contents: CheckpointContents, path: Path, use_sge: bool) -> tuple[nn.Module, str, ModelConfig]:
    """The checkpoint's network on the meta device (no memory), its architecture name and config, after
    checking that the file holds enough weights for it; SGEVizError otherwise."""
    if contents.config is not None:
        config = contents.config
    else:
        arch = contents.arch or infer_arch(contents.state_dict)
        if arch is None:
            raise SGEVizError(
                f"Checkpoint {path} does not say its architecture and its keys match no known one "
                f"({', '.join(available_models())}). For your own network, pass its code with --model-def "
                "FILE.py:CALLABLE and load this file with --checkpoint.")
        if arch not in ARCHS:
            raise SGEVizError(f"Checkpoint {path} is for architecture {arch!r}, which this tool does not know; "
                              f"known: {', '.join(available_models())}. For your own network, pass its code with "
                              "--model-def FILE.py:CALLABLE.")
        config = ARCHS[arch].config_for(contents.state_dict)
    arch_name = config.arch
    try:
        # On the meta device: a crafted config must not allocate terabytes.
        with torch.device("meta"):
            skeleton, built = build_model(arch_name, config, use_sge=use_sge)
    except (KeyError, ValueError, TypeError, RuntimeError, ZeroDivisionError) as exc:
        raise SGEVizError(f"Checkpoint {path} describes a model that cannot be built ({type(exc).__name__}: "
                          f"{exc}).") from exc
    expected = skeleton.state_dict()
    needed = sum(t.numel() for t in expected.values())
    held = sum(t.numel() for t in contents.state_dict.values())
    if needed > held:  # cannot fit: say which keys differ, else just the sizes
        misfit = fit_problems({k: v.shape for k, v in expected.items()}, contents.state_dict)
        raise SGEVizError(f"Checkpoint {path} does not fit {arch_name}: "
                          + (misfit or f"the model has {needed:,} weights but the file holds only {held:,}")
                          + ". Check that the file is an SGE-ResNet of this architecture.")
    return skeleton, arch_name, built


def fit_problems(expected: dict[str, torch.Size], state_dict: dict[str, torch.Tensor]) -> str | None:
    """Missing, unexpected and wrongly shaped keys, as one line; None when every key fits."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v)}"
             for k, v in expected.items() if k in state_dict and state_dict[k].shape != v]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            parts.append(f"{len(keys)} {label}: " + ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else ""))
    return "; ".join(parts) or None


def load_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load every key exactly, or raise one error listing what does not fit."""
    misfit = fit_problems({k: v.shape for k, v in model.state_dict().items()}, state_dict)
    if misfit:
        raise SGEVizError(f"Checkpoint {path} does not fit {arch}: {misfit}. "
                          "Check that the file is an SGE-ResNet of this architecture.")
    model.load_state_dict(state_dict, strict=True)


def verify_forward(model: nn.Module, config: ModelConfig, path: Path) -> None:
    """One forward at the model's input size: weights that load but cannot run, or give NaN, fail here."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, config.channels, config.height, config.width, generator=generator)
    model.eval()
    try:
        with torch.inference_mode():
            out = model(x)
    except (RuntimeError, ValueError) as exc:
        raise SGEVizError(f"Checkpoint {path} loads but the model cannot run ({type(exc).__name__}: "
                          f"{str(exc)[:200]}); its config does not match its weights.") from exc
    # A built-in network without its head (gates only) gives its pooled features: any width is right.
    if config.classifies and out.shape != (1, config.num_classes):
        raise SGEVizError(f"Checkpoint {path} loads but gives outputs of shape {tuple(out.shape)}, not "
                          f"(1, {config.num_classes}): its config does not match its weights.")
    if not torch.isfinite(out).all():
        raise SGEVizError(f"Checkpoint {path} loads but gives NaN/Inf outputs at its {config.size_label} input "
                          "size: the weights or the config are broken.")


# --- writing ----------------------------------------------------------------

def save_safetensors(model: nn.Module, config: ModelConfig, path: str | Path,
                     extra_metadata: dict[str, object] | None = None) -> Path:
    """Save weights and the model's config (plus JSON-encoded extras) as one .safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    metadata = {CONFIG_KEY: json.dumps(config.to_dict()), "arch": config.arch}
    for key, value in (extra_metadata or {}).items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_metadata(path: str | Path) -> dict[str, object]:
    """A safetensors file's metadata with JSON values decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        raw = dict(f.metadata() or {})
    out: dict[str, object] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out
