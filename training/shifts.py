"""The shift suite: named test sets of held-out scenes, each a fixed generator setting and a fixed seed.

Every shift draws its items and clutter only from Fashion-MNIST **t10k** and its photo backgrounds
only from the test photo set (``training.photos.TEST_PHOTOS``), so nothing in it can have been
seen in training, which draws from the train split and the train photos only. A shift is
deterministic: scene ``i`` of a shift is the same image, label and mask on every machine and in
any order (each scene is seeded by (split, seed, i)).

``held_out`` is the randomised distribution of the "wild" recipe itself (``SceneConfig()``); the
other randomised shifts change one thing each; ``original`` is the first 1,000 scenes of the
held-out set of the original recipe (the shipped model's own generator, ``ClutterConfig()``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .data import ClutterConfig, ClutteredFashionMNIST, SceneConfig, WildFashionMNIST

SHIFT_SAMPLES = 1000
SHIFT_SEED = 20261126  # shift k uses SHIFT_SEED + k; training uses the train split, never these streams
ORIGINAL_SEED = 20250905  # = evaluate.EVAL_SEED: the original recipe's held-out scenes


@dataclass(frozen=True)
class Shift:
    """One named test set: ``count`` t10k scenes of ``config`` with ``seed``."""

    name: str
    what: str
    seed: int
    config: SceneConfig | ClutterConfig
    count: int = SHIFT_SAMPLES

    def dataset(self, root: str | Path | None = None) -> WildFashionMNIST | ClutteredFashionMNIST:
        """The shift's scenes: always the test split (t10k items, test photos)."""
        kind = ClutteredFashionMNIST if isinstance(self.config, ClutterConfig) else WildFashionMNIST
        return kind("test", seed=self.seed, length=self.count, root=root, config=self.config)


_WILD = SceneConfig()
_SHIFT_CONFIGS: tuple[tuple[str, str, SceneConfig | ClutterConfig], ...] = (
    ("held_out", "the randomised distribution itself (canvas 48-160 px, 0-12 fragments, all backgrounds)", _WILD),
    ("heavy_clutter", "8-12 bright, mostly opaque fragments (opacity 0.7-1, brightness 0.7-1)",
     dataclasses.replace(_WILD, clutter_count=(8, 12), clutter_opacity=(0.7, 1.0), clutter_brightness=(0.7, 1.0))),
    ("small_items", "items 20-35% of the canvas side (held-out: 35-85%)",
     dataclasses.replace(_WILD, item_frac=(0.2, 0.35))),
    ("large_canvas", "canvas 128-160 px before the resize to 64", dataclasses.replace(_WILD, canvas=(128, 160))),
    ("shop_style", "one dark or coloured item on a plain light background, 80-128 px, no clutter, no rotation, "
     "blur or JPEG",
     dataclasses.replace(_WILD, canvas=(80, 128), item_frac=(0.5, 0.85), background_weights=(0, 0, 1, 0),
                         clutter_count=(0, 0), max_rotation=0.0, blur_prob=0.0, jpeg_prob=0.0)),
    ("photo_backgrounds", "every background a crop of a test photo",
     dataclasses.replace(_WILD, background_weights=(0, 0, 0, 1))),
    ("jpeg_q30", "every scene JPEG-compressed at quality 30", dataclasses.replace(_WILD, jpeg_prob=1.0,
                                                                                   jpeg_quality=(30, 30))),
)
SHIFTS: tuple[Shift, ...] = tuple(Shift(name, what, SHIFT_SEED + k, cfg) for k, (name, what, cfg)
                                  in enumerate(_SHIFT_CONFIGS)) + (
    Shift("original", "the original recipe's generator (64 px, 2-5 faint patches, dark noise; the shipped "
          "model's own held-out scenes, first 1,000)", ORIGINAL_SEED, ClutterConfig()),)


def shift_by_name(name: str) -> Shift:
    """The shift called ``name`` (ValueError naming the choices otherwise)."""
    for shift in SHIFTS:
        if shift.name == name:
            return shift
    raise ValueError(f"unknown shift {name!r}: one of {', '.join(s.name for s in SHIFTS)}")
