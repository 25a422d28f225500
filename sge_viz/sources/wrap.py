"""``wrap_model``: any ``nn.Module`` with SGE layers -> a ``LoadedModel`` that every analysis takes.

The module is used as it is: never copied, moved (unless ``device`` is given) or left in another mode.
One probe forward at the input size says what the output is (one row of class scores per image, or
anything else: gates only) and which SGE layers it calls.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..capture.recorder import GateRecorder, other_gate_note, shared_notes, uncaptured_sge_like
from ..device import pick_device
from ..errors import SGEVizError
from ..models.checkpoint import TORCHSCRIPT, backbone_only, fit_problems, is_torchscript_file, read_checkpoint
from ..models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from ..models.loaded import LoadedModel

CROP_FRACTION = 0.875  # the standard eval transform: Resize(round(size / 0.875)) + CenterCrop(size)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)  # ImageNet's mean and std averaged over R, G, B


def parse_size(value: int | str | Sequence[int]) -> int | tuple[int, int]:
    """224, "224", "256x512" (height x width) or (256, 512) -> an int (square) or (height, width)."""
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise SGEVizError(f"Input size {value!r} is not N or HxW (e.g. 224 or 256x512).") from None
        value = numbers[0] if len(numbers) == 1 else tuple(numbers)
    if isinstance(value, Sequence):
        if len(value) != 2:
            raise SGEVizError(f"Input size {value!r} is not N or (height, width).")
        h, w = int(value[0]), int(value[1])
        size: int | tuple[int, int] = h if h == w else (h, w)
    else:
        size = int(value)
    if not all(8 <= s <= 4096 for s in ((size,) if isinstance(size, int) else size)):
        raise SGEVizError(f"Input size {value!r} is outside 8..4096 pixels.")
    return size


def read_labels(labels: str | Path | Sequence[str] | None) -> tuple[str, ...]:
    """Class names: a sequence, or a text file with one name a line (blank lines ignored)."""
    if labels is None:
        return ()
    if isinstance(labels, str | Path):
        path = Path(labels)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SGEVizError(f"--labels {path}: cannot read it as UTF-8 text ({exc}); give a file with one class "
                              "name a line.") from exc
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    return tuple(str(name) for name in labels)


def labels_for(labels: str | Path | Sequence[str] | None, classifies: bool, num_classes: int,
               declared_gates_only: bool = False) -> tuple[str, ...]:
    """``read_labels``, checked against the model: none for a gates-only model (found, or declared with
    --gates-only), one name per class score."""
    names = read_labels(labels)
    if names and declared_gates_only:
        raise SGEVizError("--labels and --gates-only (gates_only=True) contradict each other: a gates-only "
                          "model has no classes; leave one out.")
    if names and not classifies:
        raise SGEVizError("--labels was given, but the model's output is not one row of class scores per image "
                          "(gates only): leave --labels out.")
    if names and len(names) != num_classes:
        raise SGEVizError(f"--labels holds {len(names)} class names, but the model gives {num_classes} scores.")
    return names


def _stats(values: Sequence[float] | None, channels: int, default: tuple, what: str) -> tuple[float, ...]:
    if values is None:
        return default if channels == 3 else GRAY_MEAN if what == "mean" else GRAY_STD
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or not all(math.isfinite(v) for v in values) or \
            (what == "std" and not all(v > 0 for v in values)):
        raise SGEVizError(f"--{what} needs {channels} finite numbers{' > 0' if what == 'std' else ''} "
                          f"(one per input channel), got {values}.")
    return values


def wrap_model(module: nn.Module, labels: str | Path | Sequence[str] | None = None,
               input_size: int | str | Sequence[int] = 224, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, resize: str = "crop", name: str | None = None,
               channels: int = 3, sge_layers: Sequence[str] = (), domain: str = "", cam_layer: str = "",
               device: str | torch.device | None = None, source: str = "your code",
               gates_only: bool = False) -> LoadedModel:
    """A ``LoadedModel`` for your own network, which ``analyze``, ``dissect`` and ``explain`` take.

    - ``labels``: class names (a list, or a file with one a line); their count must match the output.
    - ``input_size``: N (square) or "HxW" / (H, W); ``channels``: 3 (RGB) or 1 (grayscale input).
    - ``mean``/``std``: per channel, for inputs in [0, 1] (default ImageNet's; for 1 channel their average).
    - ``resize``: "crop" (torchvision's ``Resize(round(size / 0.875))`` + ``CenterCrop(size)``, classifiers)
      or "full" (the whole image resized to the input size, as detectors and segmenters see it).
    - ``sge_layers``: fnmatch patterns over module paths for SGE layers that structure detection misses.
    - ``domain``: one sentence on what the model knows, shown beside its results.
    - ``device``: None keeps the module where it is; otherwise it is moved there.
    - ``gates_only``: the output is not class scores (an embedding, a feature map): no predictions, no
      class evidence. Without it, a (1, K) output is read as K class scores.

    The module's mode, parameters, buffers and hooks are left as they were (analysis runs in eval mode
    and restores the modes). Raises SGEVizError when the probe forward fails or no SGE layer is captured.
    """
    if not isinstance(module, nn.Module):
        raise SGEVizError(f"wrap_model needs a torch.nn.Module, not a {type(module).__name__}.")
    if resize not in ("crop", "full"):
        raise SGEVizError(f"--resize must be 'crop' or 'full', not {resize!r}.")
    if channels not in (1, 3):
        raise SGEVizError(f"--channels must be 1 or 3, not {channels}.")
    size = parse_size(input_size)
    height, width = (size, size) if isinstance(size, int) else size
    patterns = tuple(p.strip() for p in sge_layers if p.strip())
    if device is not None:
        module.to(pick_device(device) if not isinstance(device, torch.device) else device)
    first = next(iter(module.parameters()), None)
    dev = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    output, notes = _probe(module, channels, height, width, patterns, dev, dtype)

    scores = isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[0] == 1
    classifies = scores and not gates_only
    num_classes = int(output.shape[1]) if classifies else 0
    names = labels_for(labels, classifies, num_classes, declared_gates_only=gates_only)
    notes += _output_notes(output, classifies, gates_only, bool(names), num_classes)
    config = ModelConfig(
        arch=type(module).__name__, num_classes=num_classes, input_size=size,
        resize_size=round(max(height, width) / CROP_FRACTION) if resize == "crop" else 0,
        mean=_stats(mean, channels, IMAGENET_MEAN, "mean"), std=_stats(std, channels, IMAGENET_STD, "std"),
        class_names=names, description=domain, channels=channels, task="classify" if classifies else "gates",
        sge_layers=patterns, cam_layer=cam_layer,
        layout_note=f"Built by your code ({source}): the network's own forward is analysed.")
    return LoadedModel(module, config, name or type(module).__name__, source, dev, dtype, notes=notes)


def _probe(module: nn.Module, channels: int, height: int, width: int, patterns: tuple[str, ...],
           dev: torch.device, dtype: torch.dtype) -> tuple[object, list[str]]:
    """One forward of a random (1, channels, height, width) input with every SGE layer hooked: the output and
    the notes on what was skipped, shared or missed. SGEVizError when it cannot run or no gate is captured."""
    # A random probe, not zeros: a module that is not a gate can pass the check on a blank input.
    probe = torch.randn(1, channels, height, width, generator=torch.Generator().manual_seed(0)).to(dev, dtype)
    try:
        with torch.inference_mode(), GateRecorder(module, activations=False, patterns=patterns) as recorder:
            output = module(probe)
    except SGEVizError:
        raise
    except Exception as exc:
        raise SGEVizError(f"Your model cannot run on a (1, {channels}, {height}, {width}) input "
                          f"({type(exc).__name__}: {str(exc)[:300]}): check --input-size and --channels.") from exc
    notes = [f"{layer}: {why}" for layer, why in recorder.skipped.items()]
    notes += [other_gate_note(layer, gate) for layer, gate in recorder.other.items()]
    if not recorder.captures and recorder.other:
        raise SGEVizError(f"Only gates over 1-D or 3-D inputs were found ({', '.join(recorder.other)}): the pictures, "
                          "statistics and image-set summaries are of gates over 2-D maps, so there is nothing to "
                          "show. Read them with the library: GateRecorder(model).other after a forward.")
    if not recorder.captures:
        found = ", ".join(n for n, _ in recorder.layers) or "none"
        advice = ("The modules were refused for the reasons above (--sge-layers chooses which modules are read, "
                  "not how): only a module whose output is its input times one gate per group and position is "
                  "drawn." if patterns and recorder.layers else
                  "Name its SGE modules with --sge-layers PATTERN (fnmatch over module names, e.g. "
                  "'decoder.*.attn').")
        raise SGEVizError("No SGE gate was captured in your model (modules tried: " + found + "; "
                          + ("; ".join(notes) if notes else "none called") + "). " + advice)
    notes += shared_notes(recorder.layers)
    missed = uncaptured_sge_like(module, patterns)
    if missed:
        notes.append("Modules named like SGE but not captured (no group count and per-group scale and shift "
                      "found): " + ", ".join(missed[:8]) + (" ..." if len(missed) > 8 else "")
                      + ". Add them with --sge-layers if they are SGE layers.")
    return output, notes


def _output_notes(output: object, classifies: bool, gates_only: bool, named: bool, num_classes: int) -> list[str]:
    """What the output is read as, when it is not named class scores: gates only (declared or not), or scores
    without names."""
    notes = []
    if gates_only:
        notes.append(f"Gates only, as declared (--gates-only): the model's output ({_describe(output)}) is not "
                     "read as class scores, so there are no predictions and no out-of-domain verdict.")
    elif not classifies:
        notes.append("Gates only: the model's output is not one row of class scores per image "
                     f"({_describe(output)}), so there are no predictions and no out-of-domain verdict.")
    elif not named:
        notes.append(f"No class names were given: the model's {num_classes} outputs are read as class scores "
                     "and named 'class 0' ... Give them with --labels FILE (labels=[...] in Python); if the "
                     "output is not class scores (an embedding, features), declare --gates-only "
                     "(gates_only=True).")
    return notes


def _describe(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, dict):
        return f"a dict with keys {', '.join(map(str, list(output)[:5]))}"
    return f"a {type(output).__name__}"


def load_weights(module: nn.Module, path: str | Path, strip_prefix: str | None = None) -> list[str]:
    """Load a checkpoint into ``module`` strictly: a plain state_dict, ``{'state_dict': ...}``,
    ``{'model': ...}``, safetensors; ``module.`` prefixes removed, ``strip_prefix`` where given (None: keys that
    fit the model as saved are loaded as saved, else an mmdetection-style ``backbone.`` prefix is recognised;
    "": every key as saved). Returns notes on what loading changed (a prefix recognised); raises SGEVizError
    listing missing, unexpected and wrongly shaped keys."""
    contents = read_checkpoint(path, "" if strip_prefix is None else strip_prefix)
    expected = {k: v.shape for k, v in module.state_dict().items()}
    misfit = fit_problems(expected, contents.state_dict)
    notes = list(contents.notes)
    if misfit and strip_prefix is None:
        backbone, found = backbone_only(contents.state_dict)
        if backbone is not contents.state_dict and not fit_problems(expected, backbone):
            contents.state_dict, misfit, notes = backbone, None, notes + found
    if misfit:
        raise SGEVizError(f"Checkpoint {path} does not fit the model of --model-def: {misfit}. "
                          "Check --model-kwargs, or use --strip-prefix PREFIX for keys saved under a prefix.")
    module.load_state_dict(contents.state_dict, strict=True)
    return notes


def load_pickled_model(path: str | Path) -> nn.Module:
    """A whole model saved with ``torch.save(model)``. Unpickling runs code from the file: only for files
    the user trusts, asked for with --trust-pickle on the command line (never from the app)."""
    if is_torchscript_file(Path(path)):
        raise SGEVizError(f"--trust-pickle: {path} is a TorchScript module. {TORCHSCRIPT}. Pass the Python model "
                          "with --model-def FILE.py:CALLABLE and its weights with --checkpoint.")
    try:
        with Path(path).open("rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise SGEVizError(f"--trust-pickle: {path} could not be unpickled ({type(exc).__name__}: {exc}); the code "
                          "that defined the model must be importable here.") from exc
    if not isinstance(obj, nn.Module):
        raise SGEVizError(f"--trust-pickle: {path} holds a {type(obj).__name__}, not a whole model; load "
                          "weights with --model-def FILE.py:CALLABLE --checkpoint instead.")
    return obj
