"""Background photographs for the randomised scenes: small crops of permissively licensed photos.

    python -m training.photos       # rewrite the crops in training/backgrounds/ from skimage.data

The crops are shipped in the repository (``training/backgrounds/{train,test}/``), so training
and evaluation need neither scikit-image nor a download; scikit-image is only needed to
regenerate them. Train scenes draw backgrounds only from the train photos, test scenes (and so
every shift of the evaluation suite) only from the test photos; the two sets share no photograph.
Licences, as stated in each function's docstring in scikit-image 0.26, are listed in
``training/backgrounds/README.md``.
"""
from __future__ import annotations

import argparse
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from sge_viz.errors import SGEVizError

BACKGROUND_DIR = Path(__file__).resolve().parent / "backgrounds"
# name in skimage.data -> licence line (checked in each function's docstring)
TRAIN_PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
    "coffee": "CC0 (photographer Rachel Michetti)",
    "brick": "CC0 (CC0Textures, Bricks25)",
    "grass": "CC0 (DeviantArt, linolafett)",
    "camera": "CC0 (photographer Lav Varshney)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
    "clock": "public domain (photographer Stefan van der Walt)",
    "text": "public domain ('No known copyright restrictions, released into the public domain')",
}
TEST_PHOTOS: dict[str, str] = {
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX)",
    "gravel": "CC0 (CC0Textures, Gravel04)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)",
    "coins": "no known copyright restrictions (Brooklyn Museum)",
}
PHOTO_SETS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}
CROPS_PER_PHOTO = 4
CROP_SIZE = 128
CROP_SEED = 20261126


def crop_paths(split: str) -> list[Path]:
    """The shipped crop files of one split's photo set, sorted by name."""
    if split not in PHOTO_SETS:
        raise ValueError(f"unknown split {split!r}: 'train' or 'test'")
    return sorted((BACKGROUND_DIR / split).glob("*.jpg"))


@lru_cache(maxsize=2)
def load_backgrounds(split: str) -> tuple[np.ndarray, ...]:
    """Every background crop of one split's photo set: each (128, 128, 3) uint8, in file-name order."""
    paths = crop_paths(split)
    if not paths:
        raise SGEVizError(f"No background photos in {BACKGROUND_DIR / split}: regenerate them with "
                          "`python -m training.photos` (needs scikit-image).")
    return tuple(np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in paths)


def make_crops(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` square crops of a photo (H, W[, 3]) uint8, each of a random side between 30% and 70% of
    the shorter side, resized to ``size`` x ``size`` RGB."""
    image = Image.fromarray(photo).convert("RGB")
    w, h = image.size
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.3, 0.7) * min(w, h))
        left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crops.append(image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC))
    return crops


def write_crops(directory: Path = BACKGROUND_DIR) -> list[Path]:
    import skimage.data

    written = []
    for split, photos in PHOTO_SETS.items():
        folder = directory / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jpg"):
            old.unlink()
        for k, name in enumerate(photos):
            rng = np.random.default_rng([CROP_SEED, k, len(split)])
            photo = getattr(skimage.data, name)()
            if photo.dtype == bool:
                raise SGEVizError(f"skimage.data.{name} is a binary image, not a photo")
            for j, crop in enumerate(make_crops(photo, CROPS_PER_PHOTO, CROP_SIZE, rng)):
                path = folder / f"{name}_{j}.jpg"
                crop.save(path, quality=90, optimize=True)
                written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.photos", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=BACKGROUND_DIR)
    args = p.parse_args(argv)
    for path in write_crops(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
