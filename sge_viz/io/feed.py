"""The one image feed of every batch job (``sge-viz analyze``, ``sge-viz dissect``, the app's Image set tab):
``Item``s in, batches of crops the network sees out, read and decoded in worker processes.

    for batch in item_loader(items, loaded.config, batch_size=8, workers=default_workers(len(items))):
        for fed in batch:          # Fed(index, view (S, S, 3) uint8 | None, mask (S, S) bool | None, error, note)
            ...

An image that cannot be read has ``error`` (why) and no view; a mask that cannot be used (unreadable, another
size than its image, empty or covering the whole crop) is dropped with ``note`` (why), and its image is fed
without it. Workers end with the process that started them (``lifeline``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..capture.preprocess import center_crop_view
from ..errors import SGEVizError
from .inputs import Item, open_image_of, open_mask_of
from .lifeline import worker_init_fn

# Inputs above which reading moves to worker processes when no count is asked for (below, starting
# workers costs more than it saves).
WORKERS_FROM = 32


@dataclass
class Fed:
    """One item as the network will see it: ``view`` (S, S, 3) uint8 and ``mask`` (S, S) bool cropped alike, or
    ``error`` (the item is skipped) / ``note`` (its mask is dropped), each one line of text."""

    index: int
    view: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    note: str | None = None


def crop_mask(mask: np.ndarray, resize_size: int, input_size: int | tuple[int, int]) -> np.ndarray:
    """An image's mask (H, W) bool put through the image's resize and centre crop: (S, S) bool, aligned with
    the view and so with the gates."""
    image = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return center_crop_view(image, resize_size, input_size) >= 128


def load_item(item: Item, resize_size: int, input_size: int | tuple[int, int], index: int = 0) -> Fed:
    """The item read, decoded and cropped (see ``Fed``); never raises for a bad file, says why instead."""
    try:
        image = open_image_of(item)
    except SGEVizError as exc:
        return Fed(index, error=" ".join(str(exc).split()))
    view = center_crop_view(image, resize_size, input_size)
    if item.mask is None:
        return Fed(index, view)
    try:
        mask = crop_mask(open_mask_of(item, image.size), resize_size, input_size)
    except SGEVizError as exc:
        return Fed(index, view, note=f"mask skipped, so no mask AUC: {' '.join(str(exc).split())}")
    if not mask.any() or mask.all():
        return Fed(index, view, note=f"mask skipped, so no mask AUC: {item.mask} is empty or covers the whole "
                                     "crop the model sees")
    return Fed(index, view, mask)


class ItemViews:
    """Dataset of ``Fed`` for ``items`` from input ``start`` on (index = the item's position in ``items``)."""

    def __init__(self, items: Sequence[Item], resize_size: int, input_size: int | tuple[int, int], start: int = 0):
        self.items, self.resize_size, self.input_size, self.start = items, resize_size, input_size, start

    def __len__(self) -> int:
        return len(self.items) - self.start

    def __getitem__(self, i: int) -> Fed:
        index = self.start + i
        return load_item(self.items[index], self.resize_size, self.input_size, index)


def _as_list(batch: list[Fed]) -> list[Fed]:
    return batch


def default_workers(count: int) -> int:
    """Reading workers for ``count`` inputs when none are asked for: up to 4, none for small sets."""
    return min(4, os.cpu_count() or 1) if count > WORKERS_FROM else 0


def item_loader(items: Sequence[Item], config, batch_size: int, workers: int, start: int = 0):
    """The DataLoader of ``ItemViews`` (``config``: the model's ``ModelConfig``) in batches (lists of ``Fed``)
    of ``batch_size``, read by ``workers`` processes (0: in this one) that end with this process."""
    from torch.utils.data import DataLoader

    return DataLoader(ItemViews(items, config.resize_size, config.input_size, start), batch_size=batch_size,
                      num_workers=workers, collate_fn=_as_list, worker_init_fn=worker_init_fn() if workers else None)
