"""ImageNet-1k class names, shipped as a data file (index order of the official models)."""
from __future__ import annotations

from functools import lru_cache

from ..resources import read_text


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the index order of the official models."""
    text = read_text("imagenet_classes.txt")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == 1000, "imagenet_classes.txt must hold 1000 names"
    return names
