"""The example images the app offers, and the item masks of the example scenes (recognised by their pixels)."""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import SGEVizError
from ..io.images import IMAGE_SUFFIXES, open_image
from ..io.masks import is_mask_file, mask_for
from ..resources import SCENE_PREFIXES, examples_dir

if TYPE_CHECKING:
    from ..models.config import ModelConfig


def example_paths(directory: str | Path | None = None) -> list[Path]:
    """Every example image (masks excluded): the default model's randomised scenes, then the original
    generator's scenes, then the photos, each sorted by name; [] when the folder is missing."""
    directory = Path(directory) if directory is not None else examples_dir()
    try:
        files = [p for p in directory.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(p)]
    except OSError:
        return []
    return sorted(files, key=lambda p: (not is_wild_scene(p), not is_scene(p), p.name))


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
