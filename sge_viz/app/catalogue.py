"""The models the app offers (the two demo models, checkpoints found by content, untrained networks on request),
loaded on first use and cached, and the one analysis per (image, model) that every picture draws on."""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..capture.analysis import Analysis, analyze
from ..domain import detector_from_metadata
from ..errors import SGEVizError
from ..io.examples import example_mask, true_class
from ..io.feed import crop_mask
from ..io.images import open_image
from ..models.checkpoint import check_arch, read_checkpoint
from ..models.config import ModelConfig
from ..models.factory import (
    DEMO_LABEL,
    SCENES_LABEL,
    LoadedModel,
    find_checkpoints,
    load_checkpoint,
)
from ..models.registry import ARCHS, DEMO_ARCH, available_models, untrained
from ..resources import default_checkpoint, demo_checkpoint, scenes_checkpoint
from ..sources import ModelSource, open_model

FALLBACK_ARCH = "sge_resnet18"  # offered, untrained, while both demo checkpoints are missing


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model dropdown and how to load it."""

    label: str
    name: str | None = None
    checkpoint: Path | None = None
    random_weights: bool = False


class ModelService:
    """The models the app offers, loaded on first use and cached; safe to call from many threads."""

    def __init__(self, device: str | None = None, checkpoint: str | Path | None = None,
                 random_weights: list[str] | tuple[str, ...] = (), checkpoint_dir: str | Path | None = None,
                 default: str | None = None, models: list[LoadedModel] | tuple[LoadedModel, ...] = ()):
        self.device = device
        self.notice = ""
        self._cache: dict[str, LoadedModel] = {}
        self._configs: dict[str, ModelConfig] = {}
        self._groups: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cli_label: str | None = None
        self._choices = self._discover(checkpoint_dir, checkpoint, random_weights)
        # Models built by the user's own code (``sge_viz.serve``, ``--model-def``) come first, loaded already.
        given = []
        for loaded in models:
            label = loaded.name
            while label in self._cache or label in self.choices:
                label += " (yours)"
            self._cache[label] = loaded
            given.append(ModelChoice(label))
        self._choices = given + self._choices
        if given and self._cli_label is None:
            self._cli_label = given[0].label
        # Start on what was asked for: --model, else the --checkpoint file, else the default demo model (listed
        # first).
        self.default = self.resolve(default) if default else (self._cli_label or self._choices[0].label)
        if not default_checkpoint().is_file():
            self.notice = (f"The shipped default model ({default_checkpoint().name}) is missing, so the "
                           f"app starts on {self.default} instead"
                           + (" (untrained: its gates are not meaningful)" if "random weights" in self.default
                              else "")
                           + ". Reinstall sge-viz or restore it with `git checkout checkpoints/`.")

    # --- which models -----------------------------------------------------

    def _discover(self, checkpoint_dir: str | Path | None, checkpoint: str | Path | None,
                  random_weights: list[str] | tuple[str, ...]) -> list[ModelChoice]:
        choices: list[ModelChoice] = []
        seen: set[Path] = set()
        if checkpoint is not None:
            # Named on the command line: load now, so a bad file fails at start-up with its reason.
            path = Path(checkpoint)
            loaded = load_checkpoint(path, self.device)
            self._cache[loaded.name] = loaded
            choices.append(ModelChoice(loaded.name, checkpoint=path))
            self._cli_label = loaded.name
            seen.add(path.resolve())
        # The shipped demo models first: the default (randomised scenes), then the original one.
        shipped = ((SCENES_LABEL, scenes_checkpoint()), (DEMO_LABEL, demo_checkpoint()))
        for position, (label, path) in enumerate(shipped):
            if path.is_file() and path.resolve() not in seen:
                choices.insert(position, ModelChoice(label, checkpoint=path))
                seen.add(path.resolve())
        for found in find_checkpoints(checkpoint_dir):
            if found.path.resolve() not in seen:
                choices.append(ModelChoice(found.label, checkpoint=found.path))
                seen.add(found.path.resolve())
        names = list(random_weights)
        if not choices and FALLBACK_ARCH not in names:
            names.append(FALLBACK_ARCH)
        for name in names:
            if name not in available_models() or name == DEMO_ARCH:
                raise SGEVizError(f"--random-weights {name!r} is not a known architecture; known: "
                                  f"{', '.join(m for m in available_models() if m != DEMO_ARCH)}.")
            choices.append(ModelChoice(f"{name} (random weights)", name=name, random_weights=True))
        return choices

    @property
    def choices(self) -> list[str]:
        return [c.label for c in self._choices]

    def resolve(self, wanted: str) -> str:
        """A dropdown label from a label, a model or architecture name or "demo" (the default demo model); else
        a clear error."""
        for choice in self._choices:
            if wanted == choice.label:
                return choice.label
        if wanted == "demo" and SCENES_LABEL in self.choices:
            return SCENES_LABEL
        for choice in self._choices:
            if choice.label.split(" ")[0] == wanted:
                return choice.label
        raise SGEVizError(f"Model {wanted!r} is not on offer; choose one of: {', '.join(self.choices)}. "
                          "Put official checkpoints in checkpoints/, pass --checkpoint PATH, or use "
                          "--random-weights NAME for an untrained network.")

    def _choice(self, label: str) -> ModelChoice:
        for choice in self._choices:
            if choice.label == label:
                return choice
        raise SGEVizError(f"Model {label!r} is not on offer; choose one of: {', '.join(self.choices)}.")

    def get(self, label: str) -> LoadedModel:
        """The loaded model for a dropdown label; loads it once, even when asked from several threads."""
        choice = self._choice(label)
        with self._guard:
            if label in self._cache:
                return self._cache[label]
            lock = self._locks.setdefault(label, threading.Lock())
        with lock:
            if label not in self._cache:
                # The one path every model takes (CLI, app, Python): a source -> open_model -> a LoadedModel.
                source = ModelSource(name=choice.name, random_weights=choice.random_weights,
                                     checkpoint=str(choice.checkpoint) if choice.checkpoint is not None else None)
                loaded = open_model(source, device=self.device)
                with self._guard:
                    self._cache[label] = loaded
        return self._cache[label]

    def config(self, label: str) -> ModelConfig:
        """The config of a model on offer (its domain, classes, input size, out-of-domain threshold) without
        loading its weights into a network: read from the file's header, or the registry's defaults."""
        with self._guard:
            if label in self._cache:
                return self._cache[label].config
            if label in self._configs:
                return self._configs[label]
        choice = self._choice(label)
        if choice.checkpoint is None:
            config = untrained(ARCHS[choice.name].default_config())
        else:
            contents = read_checkpoint(choice.checkpoint)
            _, config = check_arch(contents, choice.checkpoint)  # checked on the meta device: no weights
            ood = detector_from_metadata(contents.metadata, choice.checkpoint)
            if ood is not None:
                config = dataclasses.replace(config, ood_score=ood.name, ood_threshold=ood.threshold)
        with self._guard:
            self._configs[label] = config
        return config

    def domain(self, label: str) -> dict:
        """``ModelConfig.domain()`` of a model on offer: description, training data, classes, input size, OOD."""
        return self.config(label).domain()

    def groups(self, label: str) -> int:
        """Groups of the deepest SGE layer of a model on offer (the demo model 8, the official layout 64): a
        loaded model's as its layer has them (one blank forward, once), else its config's."""
        with self._guard:
            loaded = self._cache.get(label)
            known = self._groups.get(label)
        if known is not None:
            return known
        if loaded is None:
            return int(self.config(label).arch_kwargs.get("groups", 64))
        from ..capture.analysis import sge_layer_shapes

        groups = int(sge_layer_shapes(loaded)[-1]["groups"])
        with self._guard:
            self._groups[label] = groups
        return groups

    def is_loaded(self, label: str) -> bool:
        with self._guard:
            return label in self._cache

    # --- one analysis ---------------------------------------------------------

    def run_analysis(self, choice: str, image: str | Path | bytes | Image.Image, name: str = "image") -> Analysis:
        """Open the image and run the chosen model once with gate capture.

        The analysis carries the image's name, the device, the time the forward took and, for the
        shipped example scenes, the item mask cropped like the image and the true class.
        """
        pil = open_image(image)
        loaded = self.get(choice)
        start = time.perf_counter()
        analysis = analyze(loaded, pil)
        analysis.seconds = time.perf_counter() - start
        analysis.image_name = name
        analysis.device = loaded.device_label
        analysis.mask = cropped_example_mask(pil, loaded)
        analysis.true_class = true_class(pil)
        return analysis


def cropped_example_mask(pil: Image.Image, loaded: LoadedModel):
    """An example scene's item mask put through the image's resize and centre crop, so mask and gates line up."""
    mask = example_mask(pil)
    if mask is None or (mask.shape[1], mask.shape[0]) != pil.size:
        return None
    return crop_mask(mask, loaded.config.resize_size, loaded.config.input_size)
