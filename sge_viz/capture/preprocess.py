"""From an RGB image to what a model sees: resize, centre crop, normalise with the model's mean/std."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..models.config import ModelConfig


def prepare(image: Image.Image, config: ModelConfig) -> tuple[torch.Tensor, np.ndarray]:
    """The model's input tensor (1, 3, S, S) and the RGB crop it sees (S, S, 3) uint8.

    Resize the shorter side (bilinear, antialiased), centre-crop, normalise.
    """
    view = center_crop_view(image, config.resize_size, config.input_size)
    return normalise(view, config).unsqueeze(0), view


def center_crop_view(image: Image.Image, resize_size: int, crop_size: int) -> np.ndarray:
    """The (crop_size, crop_size, 3) uint8 centre crop after resizing the shorter side to ``resize_size``."""
    w, h = image.size
    scale = resize_size / min(w, h)
    new_w, new_h = max(crop_size, round(w * scale)), max(crop_size, round(h * scale))
    if (new_w, new_h) != (w, h):
        # Pillow's resize filters antialias when shrinking, like torchvision's antialias=True.
        image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=None)
    left, top = (new_w - crop_size) // 2, (new_h - crop_size) // 2
    return np.asarray(image.crop((left, top, left + crop_size, top + crop_size)), dtype=np.uint8).copy()


def normalise(view: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float32 normalised with the model's mean/std."""
    return normalise_batch([view], config)[0]


def normalise_batch(views: list[np.ndarray], config: ModelConfig, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Views, each (S, S, 3) uint8 -> (B, 3, S, S) ``dtype`` contiguous on ``device`` (default the CPU),
    (v / 255 - mean) / std per channel, in one pass over the batch (one stack, one fused multiply-add).

    The uint8 batch crosses to the device, a quarter of float32's bytes, and is normalised there: on a
    GPU this keeps the per-pixel work off the host, which feeds many images per forward.
    """
    device = torch.device(device or "cpu")
    batch = torch.from_numpy(np.stack(views))
    std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
    constants = torch.cat([-mean / std, 1.0 / (255.0 * std)])
    pinned = device.type == "cuda"  # pinned and non-blocking: no wait here for the device's earlier work
    if pinned:
        batch, constants = batch.pin_memory(), constants.pin_memory()
    x = batch.to(device, non_blocking=pinned).permute(0, 3, 1, 2)
    constants = constants.to(device, non_blocking=pinned)
    out = torch.empty(x.shape, dtype=torch.float32, device=device)
    torch.addcmul(constants[:1], x, constants[1:], out=out)
    return out if dtype == torch.float32 else out.to(dtype)
