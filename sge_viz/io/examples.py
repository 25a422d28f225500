"""The example images the app offers, the item masks of the example scenes and their true classes (recognised by
their pixels, or for a file by its name and content)."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import SGEVizError
from ..resources import CLASSES_FILE, SCENE_PREFIXES, examples_dir
from .images import IMAGE_SUFFIXES, open_image
from .masks import is_mask_file, mask_for

if TYPE_CHECKING:
    from ..capture.analysis import Prediction
    from ..models.config import ModelConfig

# The example scenes the default model (sge_resnet_demo_scenes) classifies wrongly: offered last among the
# scenes and labelled so (seeing a failure is part of reading gates honestly). tests/app/test_app_truth.py runs
# the model over every scene and checks this list.
DEFAULT_MODEL_MISSES = frozenset({"scene_wild_01.png"})


def example_paths(directory: str | Path | None = None) -> list[Path]:
    """Every example image (masks excluded): the default model's randomised scenes, then the original
    generator's scenes, then the photos, each sorted by name, the scenes the default model gets wrong
    (``DEFAULT_MODEL_MISSES``) after the others of their kind; [] when the folder is missing."""
    directory = Path(directory) if directory is not None else examples_dir()
    try:
        files = [p for p in directory.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(p)]
    except OSError:
        return []
    return sorted(files, key=lambda p: (not is_wild_scene(p), not is_scene(p), p.name in DEFAULT_MODEL_MISSES,
                                        p.name))


def is_scene(path: Path) -> bool:
    """The demo models' example scenes (``scene_*``, the randomised ones included); the other examples are
    photographs for ImageNet models."""
    return path.name.startswith(SCENE_PREFIXES["cluttered"])


def is_wild_scene(path: Path) -> bool:
    """The randomised scenes (``scene_wild_*``), examples for the default demo model."""
    return path.name.startswith(SCENE_PREFIXES["wild"])


def known_examples(config: ModelConfig) -> list[Path]:
    """The shipped examples a model of this config knows, in ``example_paths`` order: the scenes (with their
    masks) for the demo models, which have never seen a photograph, else the photos."""
    from ..models.registry import DEMO_ARCH

    scenes = config.arch == DEMO_ARCH
    return [p for p in example_paths() if is_scene(p) == scenes]


def pixel_key(image: Image.Image) -> str:
    """A digest of an RGB image's size and pixels: the same picture uploaded again has the same key."""
    return hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()


@lru_cache(maxsize=1)
def _index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for path in example_paths():
        try:
            index[pixel_key(open_image(path))] = path
        except SGEVizError:
            continue
    return index


def example_mask(image: Image.Image) -> np.ndarray | None:
    """The item mask (H, W) bool of ``image`` when it is one of the shipped example scenes, else None.

    A broken mask file costs the outline, never the analysis.
    """
    path = _index().get(pixel_key(image))
    if path is None:
        return None
    try:
        return mask_for(path)
    except (SGEVizError, OSError):
        return None


# --- true classes -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def example_classes() -> dict[str, str]:
    """The shipped scenes' true classes, ``{file name: class name}`` (``classes.json`` beside the examples,
    written by ``training.assets``); photos have none. {} when the file is missing or unreadable."""
    try:
        data = json.loads((examples_dir() / CLASSES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def true_class(image: Image.Image) -> str | None:
    """The true class of ``image`` when its pixels are one of the shipped example scenes', else None."""
    path = _index().get(pixel_key(image))
    return example_classes().get(path.name) if path is not None else None


def _file_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes, None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


_shipped_digest = lru_cache(maxsize=64)(_file_digest)  # the shipped examples do not change while running


def file_true_class(path: str | Path) -> str | None:
    """The true class of an image file that is one of the shipped example scenes: the same file name AND the
    same content (so a user's own ``scene_01.png`` is never labelled); else None."""
    path = Path(path)
    known = example_classes().get(path.name)
    if known is None:
        return None
    mine = _file_digest(path)
    return known if mine is not None and mine == _shipped_digest(examples_dir() / path.name) else None


def item_true_classes(items) -> dict[str, str]:
    """The true class of each ``sge_viz.io.inputs.Item`` that is a shipped example scene file (same name and
    content), by item name; images inside archives are not looked up."""
    found = {item.name: file_true_class(item.path) for item in items if item.member is None}
    return {name: true for name, true in found.items() if true}


def truth_mark(true: str | None, predictions: list[Prediction]) -> str:
    """The right/wrong mark shown beside the prediction: "true class: Bag ✓", or "true class: T-shirt/top ✗
    (model says Sandal)"; "" when the true class or the model's answer is unknown."""
    if not true or not predictions:
        return ""
    said = predictions[0].label
    return f"true class: {true} ✓" if said == true else f"true class: {true} ✗ (model says {said})"


def misses_caption(paths: list[Path]) -> str:
    """What a gallery's label adds about its examples the default model gets wrong (offered last): "last: a
    T-shirt/top the default model gets wrong"; "" when there are none."""
    classes = [example_classes().get(p.name) or p.stem for p in paths if p.name in DEFAULT_MODEL_MISSES]
    if not classes:
        return ""
    return f"last: {', '.join(f'a {c}' for c in classes)} the default model gets wrong"
