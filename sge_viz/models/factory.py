"""The one door to a ready model: ``create_model`` (a name, a checkpoint path or the shipped demo model).

Official checkpoints are found by content, in this order: ``checkpoint_path``,
then the folders in ``$SGE_VIZ_CHECKPOINTS`` (separated by ``os.pathsep``), then
``./checkpoints`` of the working folder. Random weights are only ever used when
asked for.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..device import pick_device
from ..domain import detector_from_metadata
from ..errors import SGEVizError
from ..resources import demo_checkpoint, scenes_checkpoint
from .checkpoint import CHECKPOINT_SUFFIXES, check_arch, load_module, read_checkpoint
from .config import ModelConfig
from .loaded import LoadedModel
from .registry import DEMO_ARCH, available_models, build_model, untrained

CHECKPOINTS_ENV = "SGE_VIZ_CHECKPOINTS"


@dataclass(frozen=True)
class FoundCheckpoint:
    """A loadable checkpoint file found in a folder, with the architecture its content matches."""

    path: Path
    arch: str
    label: str


def checkpoint_dirs() -> list[Path]:
    """Where registered models look for official weights: $SGE_VIZ_CHECKPOINTS, then ./checkpoints."""
    dirs = [Path(p) for p in os.environ.get(CHECKPOINTS_ENV, "").split(os.pathsep) if p.strip()]
    return dirs + [Path.cwd() / "checkpoints"]


SCENES_MODEL = "sge_resnet_demo_scenes"  # the default model: the demo network trained on randomised scenes
SCENES_LABEL = f"{SCENES_MODEL} (demo, randomised scenes)"  # how users see it
DEFAULT_MODEL = SCENES_MODEL  # what create_model(), every command and the app use when no model is named
DEMO_LABEL = f"{DEMO_ARCH} (demo, its own generator only)"  # the original demo model, offered second


def checkpoint_label(path: Path, arch: str) -> str:
    """How a checkpoint is named to users: one of the demo models, or its architecture and file name."""
    if _same_file(path, demo_checkpoint()):
        return DEMO_LABEL
    return SCENES_LABEL if _same_file(path, scenes_checkpoint()) else f"{arch} ({path.name})"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def find_checkpoints(directory: str | Path | None = None) -> list[FoundCheckpoint]:
    """Every loadable checkpoint in a folder (default: each of ``checkpoint_dirs()``), recognised by
    content, not by name. Unreadable or foreign files are passed over."""
    directories = [Path(directory)] if directory is not None else checkpoint_dirs()
    found, seen = [], set()
    for folder in directories:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or not path.name.endswith(CHECKPOINT_SUFFIXES) or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                arch, _ = check_arch(read_checkpoint(path), path)
            except SGEVizError:
                continue
            found.append(FoundCheckpoint(path, arch, checkpoint_label(path, arch)))
    return found


def load_checkpoint(path: str | Path, device: str | torch.device | None = None, half: bool = False,
                    channels_last: bool = False) -> LoadedModel:
    """Read, verify and strictly load a checkpoint into a fresh model in eval mode.

    Raises SGEVizError naming what is wrong with the file (missing, foreign, code-running pickle,
    truncated, NaN weights, wrong architecture, ...).
    """
    path = Path(path)
    model, config, contents = load_module(path)
    ood = detector_from_metadata(contents.metadata, path)
    if ood is not None:
        config = dataclasses.replace(config, ood_score=ood.name, ood_threshold=ood.threshold)
    loaded = _place(model, config, checkpoint_label(path, config.arch), str(path), device, half, channels_last)
    loaded.metadata = {k: v for k, v in contents.metadata.items() if not k.startswith("sge_viz.")}
    loaded.ood = ood if config.classifies else None
    loaded.notes = list(contents.notes)
    if not config.classifies:
        loaded.notes.append("Gates only: the file has no classification head (fc), so there are no predictions.")
    return loaded


def create_model(name: str | None = None, checkpoint_path: str | Path | None = None,
                 device: str | torch.device | None = None, random_weights: bool = False, half: bool = False,
                 channels_last: bool = False) -> LoadedModel:
    """A ready model, like timm's ``create_model``.

    - ``checkpoint_path``: that file, whatever ``name`` says;
    - ``name`` None, "demo" or "sge_resnet_demo_scenes" (``DEFAULT_MODEL``): the shipped demo model trained on
      randomised scenes (64x64 input, 10 Fashion-MNIST classes); "sge_resnet_demo": the original demo model,
      which knows only its own generator (Cluttered Fashion-MNIST);
    - a registered ImageNet name: its weights, found by content in ``checkpoint_dirs()``; or an untrained
      network when ``random_weights=True``.

    ``device``: "auto" (default: CUDA, else MPS, else CPU), "cpu", "cuda", "cuda:N" or "mps".
    ``half`` and ``channels_last`` apply on CUDA only. Raises SGEVizError when no weights are found.
    """
    if checkpoint_path is not None:
        return load_checkpoint(checkpoint_path, device, half, channels_last)
    if name in (None, "", "demo"):
        name = DEFAULT_MODEL
    if name in (SCENES_MODEL, DEMO_ARCH):
        path = scenes_checkpoint() if name == SCENES_MODEL else demo_checkpoint()
        if not path.is_file():
            raise SGEVizError(f"The shipped demo model {path} is missing: reinstall sge-viz or restore it with "
                              "`git checkout checkpoints/`.")
        return load_checkpoint(path, device, half, channels_last)
    if name not in available_models():
        known = [f"{SCENES_MODEL} (the default, also 'demo')", *available_models()]
        raise SGEVizError(f"Unknown model {name!r}; known: {', '.join(known)}.")
    if random_weights:
        model, config = build_model(name)
        config = untrained(config)
        return _place(model, config, f"{name} (random weights)", "random weights", device, half, channels_last)
    for found in find_checkpoints():
        if found.arch == name:
            return load_checkpoint(found.path, device, half, channels_last)
    where = " or ".join(str(d) for d in checkpoint_dirs())
    raise SGEVizError(f"No weights for {name} were found in {where}: put the official file "
                      f"(e.g. {name}.pth.tar) there, set ${CHECKPOINTS_ENV}, or pass --checkpoint PATH; use "
                      "--random-weights to explore an untrained network.")


def _place(model: nn.Module, config: ModelConfig, name: str, source: str, device, half: bool,
           channels_last: bool) -> LoadedModel:
    dev = device if isinstance(device, torch.device) else pick_device(device)
    dtype = torch.float16 if half and dev.type == "cuda" else torch.float32
    model = model.to(device=dev, dtype=dtype).eval()
    if channels_last and dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, config, name, source, dev, dtype)
