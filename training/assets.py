"""Regenerate the example images the app offers, and the item masks of the example scenes.

A scene ``assets/scene_01.png`` has its mask in ``assets/scene_01_mask.png``
(white = the item's pixels). ``python -m training.assets`` regenerates the
scenes of both shipped demo models' recipes: ``scene_NN.png``, held-out scenes of
Cluttered Fashion-MNIST (the original model's), and ``scene_wild_NN.png``, held-out
scenes of the randomised recipe and its shifts (the default model's); and copies the
photographs from scikit-image. ``--scenes`` writes one recipe's scenes only. Each scene's true class goes
into ``assets/classes.json`` (``{file name: class name}``; photos have none), which the app and
``sge-viz analyze`` read.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from sge_viz.io.masks import mask_path
from sge_viz.resources import CLASSES_FILE, SCENE_PREFIXES

from . import ASSET_DIR

# Held-out scenes shown as examples, picked by class only, not by how the model does on them.
# Original recipe: the first scene of each class in the evaluation set (t10k, EVAL_SEED).
SCENE_CLASSES = (0, 1, 5, 7, 8, 9)
# Randomised recipe: (shift, class): the first scene of that class in that shift's test set
# (``training.shifts``), so the examples cover the distribution and its harder corners.
WILD_PICKS = (("held_out", 0), ("held_out", 8), ("shop_style", 7), ("shop_style", 3),
              ("photo_backgrounds", 9), ("heavy_clutter", 1))
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _save(directory: Path, prefix: str, number: int, sample, what: str) -> Path:
    path = directory / f"{prefix}{number:02d}.png"
    Image.fromarray(sample.image).save(path, optimize=True)
    Image.fromarray(sample.item_mask.astype(np.uint8) * 255).save(mask_path(path), optimize=True)
    side = sample.image.shape[0]
    print(f"| `{path.name}` | `{mask_path(path).name}` | {what}, {sample.class_name}, {side}x{side} px |")
    return path


def write_classes(directory: Path, classes: dict[str, str]) -> Path:
    """Record the scenes' true classes in ``directory/classes.json``, keeping the entries of the other recipe's
    scenes already there; sorted by file name."""
    path = directory / CLASSES_FILE
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    known.update(classes)
    path.write_text(json.dumps(dict(sorted(known.items())), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_scenes(directory: Path, scenes: str = "cluttered") -> list[Path]:
    """The example scenes and their item masks for a recipe ("wild" or "cluttered"), their true classes in
    ``classes.json``; prints a table row per scene for ``assets/README.md``."""
    written, classes = [], {}
    if scenes == "cluttered":
        from .data import ClutteredFashionMNIST
        from .evaluate import EVAL_SEED

        dataset = ClutteredFashionMNIST("test", seed=EVAL_SEED, length=10**6)
        wanted, index = list(SCENE_CLASSES), 0
        while wanted:
            sample = dataset[index]
            if sample.label in wanted:
                wanted.remove(sample.label)
                what = f"held-out index {index}"
                written.append(_save(directory, SCENE_PREFIXES[scenes], len(written) + 1, sample, what))
                classes[written[-1].name] = sample.class_name
            index += 1
        write_classes(directory, classes)
        return written
    from .shifts import shift_by_name

    for shift_name, label in WILD_PICKS:
        dataset = shift_by_name(shift_name).dataset()
        index = next(i for i in range(len(dataset)) if int(dataset.labels[dataset.spec(i).item.source]) == label)
        what = f"{shift_name} index {index}"
        sample = dataset[index]
        written.append(_save(directory, SCENE_PREFIXES[scenes], len(written) + 1, sample, what))
        classes[written[-1].name] = sample.class_name
    write_classes(directory, classes)
    return written


def write_photos(directory: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    import skimage.data

    written = []
    for name in names:
        image = Image.fromarray(getattr(skimage.data, name)())
        path = directory / f"{name}.jpg"
        image.save(path, quality=90, optimize=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.assets", description="Regenerate the example images.")
    p.add_argument("--out", type=Path, default=ASSET_DIR)
    p.add_argument("--scenes", choices=("wild", "cluttered"), default=None,
                   help="write only this recipe's example scenes (default: both, and the photographs)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for scenes in [args.scenes] if args.scenes else list(SCENE_PREFIXES):
        write_scenes(args.out, scenes)
    if args.scenes is None:
        write_photos(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
