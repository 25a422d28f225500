"""From an RGB image to what a model sees: resize, centre crop, normalise with the model's mean/std."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..models.config import ModelConfig


def prepare(image: Image.Image, config: ModelConfig) -> tuple[torch.Tensor, np.ndarray]:
    """The model's input tensor (1, channels, H, W) and the RGB view it sees (H, W, 3) uint8.

    Resize the shorter side (bilinear, antialiased), centre-crop (or resize the whole image: see
    ``center_crop_view``), normalise.
    """
    view = center_crop_view(image, config.resize_size, config.input_size)
    return normalise(view, config).unsqueeze(0), view


def center_crop_view(image: Image.Image, resize_size: int, crop_size: int | tuple[int, int]) -> np.ndarray:
    """The RGB view a model sees, (H, W, 3) uint8, with (H, W) = ``crop_size`` (an int: square).

    ``resize_size`` > 0: torchvision's ``Resize(resize_size)`` then ``CenterCrop(crop_size)`` with its exact
    arithmetic (the shorter side becomes ``resize_size``, the longer ``int(resize_size * long / short)``,
    truncated; crop offsets ``int(round((size - crop) / 2))``). ``resize_size`` 0: the whole image
    resized to (H, W), as detectors and segmenters see it.
    """
    crop_h, crop_w = (crop_size, crop_size) if isinstance(crop_size, int) else crop_size
    w, h = image.size
    if resize_size <= 0:
        new_w, new_h = crop_w, crop_h
    elif w <= h:
        new_w, new_h = resize_size, int(resize_size * h / w)
    else:
        new_w, new_h = int(resize_size * w / h), resize_size
    # torchvision pads when the crop is larger; here the crop never is (resize_size >= the crop's sides),
    # except for a crafted config, which is clamped instead.
    new_w, new_h = max(new_w, crop_w), max(new_h, crop_h)
    if (new_w, new_h) != (w, h):
        # Pillow's resize filters antialias when shrinking, like torchvision's antialias=True.
        image = image.resize((new_w, new_h), Image.BILINEAR, reducing_gap=None)
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    return np.asarray(image.crop((left, top, left + crop_w, top + crop_h)), dtype=np.uint8).copy()


def seen_view(view: np.ndarray, config: ModelConfig) -> np.ndarray:
    """The view as the model sees it, for drawing: (H, W, 3) uint8. A 1-channel model sees the grey image
    (``normalise_batch``'s grey, repeated in the three channels, so that normalising it again gives the
    same input); a 3-channel model the view itself."""
    if config.channels != 1:
        return view
    return np.repeat(_grey(torch.from_numpy(np.ascontiguousarray(view))).numpy(), 3, axis=-1)


def _grey(batch: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 RGB -> (..., 1) uint8 grey, Pillow's "L": (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32)
    return ((batch.to(torch.int32) * weights).sum(-1, keepdim=True) + 32768).bitwise_right_shift(16).to(torch.uint8)


def normalise(view: np.ndarray, config: ModelConfig) -> torch.Tensor:
    """(H, W, 3) uint8 -> (channels, H, W) float32 normalised with the model's mean/std."""
    return normalise_batch([view], config)[0]


def normalise_batch(views: list[np.ndarray], config: ModelConfig, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Views, each (H, W, 3) uint8 -> (B, channels, H, W) ``dtype`` contiguous on ``device`` (default the
    CPU), (v / 255 - mean) / std per channel, in one pass over the batch (one stack, one fused multiply-add).
    A 1-channel model gets Pillow's grayscale ("L": (19595 R + 38470 G + 7471 B + 2^15) >> 16, what
    torchvision's ``Grayscale`` gives on a PIL image).

    The uint8 batch crosses to the device, a quarter of float32's bytes, and is normalised there: on a
    GPU this keeps the per-pixel work off the host, which feeds many images per forward.
    """
    device = torch.device(device or "cpu")
    batch = torch.from_numpy(np.stack(views))
    if config.channels == 1:
        batch = _grey(batch)
    channels = batch.shape[-1]
    std = torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1).expand(1, channels, 1, 1)
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1).expand(1, channels, 1, 1)
    constants = torch.cat([-mean / std, 1.0 / (255.0 * std)])
    pinned = device.type == "cuda"  # pinned and non-blocking: no wait here for the device's earlier work
    if pinned:
        batch, constants = batch.pin_memory(), constants.pin_memory()
    x = batch.to(device, non_blocking=pinned).permute(0, 3, 1, 2)
    constants = constants.to(device, non_blocking=pinned)
    out = torch.empty(x.shape, dtype=torch.float32, device=device)
    torch.addcmul(constants[:1], x, constants[1:], out=out)
    return out if dtype == torch.float32 else out.to(dtype)
