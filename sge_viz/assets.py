"""The example images the app offers, and the item masks that come with some of them.

A scene ``assets/scene_01.png`` has its mask in ``assets/scene_01_mask.png``
(white = the item's pixels). ``python -m sge_viz.assets`` regenerates the
Cluttered Fashion-MNIST scenes and copies the photographs from scikit-image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import SGEVizError

ASSET_DIR = Path(__file__).resolve().parent.parent / "assets"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_SUFFIX = "_mask"
# Held-out scenes shown as examples: the first index of each of these classes in the
# evaluation set (t10k, EVAL_SEED), chosen by class only, not by how the model does on them.
SCENE_CLASSES = (0, 1, 5, 7, 8, 9)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def example_images(directory: str | Path = ASSET_DIR) -> list[Path]:
    """Every example image in the folder (masks excluded), scenes first, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith(MASK_SUFFIX)]
    return sorted(files, key=lambda p: (not p.name.startswith("scene_"), p.name))


def mask_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}{MASK_SUFFIX}.png")


def mask_for(path: str | Path) -> np.ndarray | None:
    """The item mask (H, W) bool of an example image, or None when it has none."""
    mpath = mask_path(path)
    if not mpath.is_file():
        return None
    mask = np.asarray(Image.open(mpath).convert("L")) > 127
    with Image.open(path) as image:
        if image.size != (mask.shape[1], mask.shape[0]):
            raise SGEVizError(f"Mask {mpath} is {mask.shape[1]}x{mask.shape[0]} but {path} is "
                              f"{image.size[0]}x{image.size[1]}: regenerate both with `python -m sge_viz.assets`.")
    return mask


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
    p = argparse.ArgumentParser(prog="python -m sge_viz.assets", description="Regenerate the example images.")
    p.add_argument("--out", type=Path, default=ASSET_DIR)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_scenes(args.out)
    write_photos(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
