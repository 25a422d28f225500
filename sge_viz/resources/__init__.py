"""Data files that ship inside the package: ImageNet class names, the demo models' weights, example images.

Found through ``importlib.resources``, so they are there in a source checkout
(``weights`` and ``examples`` link to the top-level ``checkpoints/`` and
``assets/`` folders) and in an installed wheel (which carries copies) alike.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_WEIGHTS = "sge_resnet_demo.safetensors"  # the original demo model: it knows only its own generator
SCENES_WEIGHTS = "sge_resnet_demo_scenes.safetensors"  # the default demo model, trained on randomised scenes
# File names of the example scenes of each demo model's recipe (scene_01.png, scene_wild_01.png, ...).
SCENE_PREFIXES = {"cluttered": "scene_", "wild": "scene_wild_"}
# Beside the examples: {example scene's file name: its true class name}, written by training.assets.
CLASSES_FILE = "classes.json"


def _root() -> Path:
    # The package is always on disk (never zipped): Path() of the traversable is a real folder.
    return Path(str(resources.files(__name__)))


def resource_path(*parts: str) -> Path:
    """The path of a shipped data file (it may not exist, e.g. when the demo weights were deleted)."""
    return _root().joinpath(*parts)


def demo_checkpoint() -> Path:
    """The original demo model's weights (``sge_resnet_demo``: Cluttered Fashion-MNIST only)."""
    return resource_path("weights", DEMO_WEIGHTS)


def scenes_checkpoint() -> Path:
    """The default demo model's weights (``sge_resnet_demo_scenes``): the same architecture trained on
    randomised scenes."""
    return resource_path("weights", SCENES_WEIGHTS)


def default_checkpoint() -> Path:
    """The weights every door uses when no model is named: the randomised-scene demo model."""
    return scenes_checkpoint()


def examples_dir() -> Path:
    """The folder of example images (and the item masks of the example scenes)."""
    return resource_path("examples")


def read_text(name: str) -> str:
    """A shipped text file, e.g. ``imagenet_classes.txt``."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
