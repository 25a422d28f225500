"""ImageNet-1k class names, shipped as a data file (index order of the official models)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    text = resources.files("sge_viz.resources").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 1000, "imagenet_classes.txt must hold 1000 names"
    return names
