"""Regenerate the example images the app offers, and the item masks of the example scenes.

A scene ``assets/scene_01.png`` has its mask in ``assets/scene_01_mask.png``
(white = the item's pixels). ``python -m sge_viz.demo.assets`` regenerates the
Cluttered Fashion-MNIST scenes and copies the photographs from scikit-image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ..io.masks import mask_path
from . import ASSET_DIR

# Held-out scenes shown as examples: the first index of each of these classes in the
# evaluation set (t10k, EVAL_SEED), chosen by class only, not by how the model does on them.
SCENE_CLASSES = (0, 1, 5, 7, 8, 9)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def write_scenes(directory: Path, classes: tuple[int, ...] = SCENE_CLASSES) -> list[Path]:
    from .data import ClutteredFashionMNIST
    from .evaluate import EVAL_SEED

    dataset = ClutteredFashionMNIST("test", seed=EVAL_SEED, length=10**6)
    written, wanted, index = [], list(classes), 0
    while wanted:
        sample = dataset[index]
        if sample.label in wanted:
            wanted.remove(sample.label)
            path = directory / f"scene_{len(written) + 1:02d}.png"
            Image.fromarray(sample.image).save(path, optimize=True)
            Image.fromarray(sample.item_mask.astype(np.uint8) * 255).save(mask_path(path), optimize=True)
            written.append(path)
            print(f"{path.name}: held-out index {index}, {sample.class_name}")
        index += 1
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
    p = argparse.ArgumentParser(prog="python -m sge_viz.demo.assets", description="Regenerate the example images.")
    p.add_argument("--out", type=Path, default=ASSET_DIR)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_scenes(args.out)
    write_photos(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
