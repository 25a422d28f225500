"""Object masks beside images: ``photo_mask.png`` (white = the object) belongs to ``photo.png``/``photo.jpg``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SGEVizError

MASK_SUFFIX = "_mask"


def mask_path(image_path: str | Path) -> Path:
    """Where the mask of an image would be: ``<stem>_mask.png`` in the same folder."""
    path = Path(image_path)
    return path.with_name(f"{path.stem}{MASK_SUFFIX}.png")


def is_mask_file(path: str | Path) -> bool:
    """True for ``<stem>_mask.png`` files: masks of other images, not images to analyse."""
    path = Path(path)
    return path.suffix.lower() == ".png" and path.stem.endswith(MASK_SUFFIX)


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file as (H, W) bool (pixels above mid-grey are the object).

    ``size`` = (width, height) of its image: a mask of another size is an error saying both sizes.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L")) > 127
    except (OSError, ValueError) as exc:
        raise SGEVizError(f"Mask {path} could not be read ({exc}): save it again as a PNG.") from exc
    if size is not None and (mask.shape[1], mask.shape[0]) != tuple(size):
        raise SGEVizError(f"Mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}: "
                          "a mask must have its image's size.")
    return mask


def mask_for(image_path: str | Path) -> np.ndarray | None:
    """The mask (H, W) bool beside an image, checked against the image's size; None when there is none."""
    mpath = mask_path(image_path)
    if not mpath.is_file():
        return None
    with Image.open(image_path) as image:
        size = image.size
    return read_mask(mpath, size)
