"""Where a model comes from, and the one path from there to a ``LoadedModel``.

    source (a registered name, a checkpoint file, or the user's code)
      -> a module and its config       (registry / checkpoint / usercode + wrap)
      -> a LoadedModel                 (ready: device, notes, out-of-domain signal)

The CLI, the app, dissect's Ray actors and Python all describe a model as one ``ModelSource`` (where it comes
from, how to feed it, device and precision) and call ``open_model``; ``flags`` builds one from the
command line's flags.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import torch

from ..errors import SGEVizError
from ..models.factory import create_model
from ..models.loaded import LoadedModel
from .usercode import build_user_model
from .wrap import labels_for, load_pickled_model, load_weights, wrap_model


@dataclass(frozen=True)
class InputOptions:
    """How to feed and read a model from the user's code (``wrap_model``'s arguments)."""

    labels: str | None = None  # file with one class name a line
    input_size: int | str = 224  # N or "HxW"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    channels: int = 3
    resize: str = "crop"  # "crop" or "full"
    sge_layers: tuple[str, ...] = ()
    domain: str = ""
    cam_layer: str = ""
    gates_only: bool = False  # the output is not class scores (an embedding, a feature map): no predictions


@dataclass(frozen=True)
class ModelSource:
    """One model: a registered ``name``, a ``checkpoint`` file, or ``model_def`` (the user's code,
    ``file.py:callable`` or ``package.module:callable``), optionally with a ``checkpoint`` to load into it."""

    name: str | None = None
    checkpoint: str | None = None
    model_def: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    strip_prefix: str | None = None
    trust_pickle: bool = False  # command line only: unpickle a whole saved model
    random_weights: bool = False
    inputs: InputOptions = field(default_factory=InputOptions)
    device: str | None = None  # "auto" (None), "cpu", "cuda", "cuda:N" or "mps"
    half: bool = False  # float16 weights and inputs, on CUDA only

    @property
    def from_user_code(self) -> bool:
        return bool(self.model_def) or self.trust_pickle


def with_labels_and_domain(loaded: LoadedModel, inputs: InputOptions) -> LoadedModel:
    """A built-in model with the user's class names (e.g. a fine-tuned head) and domain sentence, where given."""
    changes = {}
    if inputs.labels:
        changes["class_names"] = labels_for(inputs.labels, loaded.config.classifies, loaded.config.num_classes)
    if inputs.domain:
        changes.update(description=inputs.domain, training_data="")
    if changes:
        loaded.config = dataclasses.replace(loaded.config, **changes)
    return loaded


def open_model(source: ModelSource, device: str | torch.device | None = None, half: bool | None = None
               ) -> LoadedModel:
    """The model a source describes, ready for analysis; ``device`` and ``half``, when given, override the
    source's own. Raises SGEVizError with what to do."""
    device = source.device if device is None else device
    half = source.half if half is None else half
    if not source.from_user_code:
        if source.strip_prefix:
            raise SGEVizError("--strip-prefix applies to --model-def checkpoints (built-in files are recognised "
                              "with their 'module.' or 'backbone.' prefix).")
        loaded = create_model(source.name, source.checkpoint, device=device, random_weights=source.random_weights,
                              half=half)
        return with_labels_and_domain(loaded, source.inputs)
    if source.name:
        raise SGEVizError("--model names a built-in model; with --model-def (or --trust-pickle) leave it out.")
    read_notes: list[str] = []  # what reading the weights changed (a prefix recognised), shown with the results
    if source.model_def:
        module = build_user_model(source.model_def, source.model_kwargs)
        if source.checkpoint:
            read_notes = load_weights(module, source.checkpoint, source.strip_prefix)
        label = source.model_def
    else:
        if not source.checkpoint:
            raise SGEVizError("--trust-pickle needs --checkpoint FILE (a whole model saved with torch.save(model)).")
        module = load_pickled_model(source.checkpoint)  # refuses a TorchScript file before unpickling anything
        warnings.warn(f"{source.checkpoint} was unpickled with --trust-pickle: loading it ran code from the file.",
                      stacklevel=2)
        label = f"{source.checkpoint} (pickled model)"
    if half and device is not None and str(device).startswith("cuda"):
        module = module.half()
    o = source.inputs
    loaded = wrap_model(module, labels=o.labels, input_size=o.input_size, mean=o.mean, std=o.std, resize=o.resize,
                        channels=o.channels, sge_layers=o.sge_layers, domain=o.domain, cam_layer=o.cam_layer,
                        gates_only=o.gates_only, device=device or "auto", source=label)
    loaded.notes[:0] = read_notes
    if source.trust_pickle:
        loaded.notes.insert(0, "Loaded with --trust-pickle: the file's own code ran when it was read.")
    return loaded


def source_from_dict(d: dict) -> ModelSource:
    """The ``ModelSource`` of ``dataclasses.asdict(source)`` (how it crosses to worker processes and Ray actors)."""
    inputs = dict(d.get("inputs") or {})
    for key in ("mean", "std", "sge_layers"):
        if inputs.get(key) is not None:
            inputs[key] = tuple(inputs[key])
    return ModelSource(**{**d, "model_kwargs": dict(d.get("model_kwargs") or {}), "inputs": InputOptions(**inputs)})
