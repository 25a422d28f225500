"""The one bilinear resizer of gate maps, as matrix products (many maps at once), and image helpers.

``resize_maps`` gives the same numbers as Pillow's ``Image.resize(..., BILINEAR)`` on a
float image (half-pixel centres, a triangle filter widened when shrinking), for
a whole (G, h, w) stack in two small matrix products.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=1)
def _blas_controller():
    try:  # threadpoolctl comes with scikit-learn; without it the products just run as numpy likes
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController()
    except Exception:  # noqa: BLE001 - an optional speed-up, never a reason to fail
        return None


def one_blas_thread():
    """The resize products are small: one BLAS thread is as fast, and no idle BLAS threads are left
    spinning on cores the model's next forward needs (a slowdown of several times on a busy machine)."""
    controller = _blas_controller()
    return controller.limit(limits=1, user_api="blas") if controller is not None else contextlib.nullcontext()


@lru_cache(maxsize=256)
def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's bilinear filter (triangle, widened when shrinking).

    Half-pixel centres, edge weights renormalised: the same numbers as
    ``Image.resize(..., BILINEAR)`` on a float image, but applicable to many maps at once.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    src = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(src[None, :] - centres[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    out = w.astype(np.float32)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=256)
def nearest_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) 0/1 weights of nearest-neighbour resizing: each output pixel copies the input cell
    its centre falls in, so every gate value shows as one flat block (the true h x w cells)."""
    src = np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)
    out = np.zeros((n_out, n_in), np.float32)
    out[np.arange(n_out), src] = 1.0
    out.setflags(write=False)
    return out


def resize_maps(maps: np.ndarray, height: int, width: int, smooth: bool = True) -> np.ndarray:
    """(..., h, w) float maps resized to (..., height, width) float32, all at once: bilinearly, or with
    ``smooth=False`` nearest-neighbour (each cell a flat block)."""
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[-2:]
    if (h, w) == (height, width):
        return maps.copy()
    matrix = resize_matrix if smooth else nearest_matrix
    rows, cols = matrix(h, height), matrix(w, width)
    with one_blas_thread():
        return rows @ (maps @ cols.T)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An (H, W, 3) uint8 image resized bilinearly (Pillow) to (height, width, 3); itself when already that size."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


@lru_cache(maxsize=256)
def gapped_resize_matrix(n_in: int, tile: int, step: int, smooth: bool = True) -> np.ndarray:
    """(step, n_in): the bilinear (or nearest) resize to ``tile`` followed by ``step - tile`` zero rows (the gap)."""
    out = np.zeros((step, n_in), np.float32)
    out[:tile] = resize_matrix(n_in, tile) if smooth else nearest_matrix(n_in, tile)
    out.setflags(write=False)
    return out



def as_rgb(image: np.ndarray) -> np.ndarray:
    """``image`` checked to be an (H, W, 3) uint8 RGB array, else ValueError."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image
