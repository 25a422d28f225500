"""Cluttered Fashion-MNIST: one Fashion-MNIST item on a canvas among clutter, with exact masks.

Each sample is drawn from its own random generator seeded by (split, seed, index),
so any sample can be regenerated alone, in any order, in any worker process.
A scene is first described (``SceneSpec``: which images, where, which colours)
and then rendered; rendering the same spec without the item gives the canvas
the item was pasted onto, which is how the masks are checked.

Compositing is opaque: the item covers exactly the pixels of its silhouette
(``item_mask``) and is drawn last, so the item mask is exactly the pixels where
the item is visible. ``clutter_mask`` is the pixels covered by clutter patches
and not by the item; the rest is textured background noise.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import SGEVizError

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ENV_ROOT = "SGE_VIZ_FASHION_MNIST"
SPLITS = {"train": "train", "test": "t10k"}
_SPLIT_CODE = {"train": 1, "test": 2}  # mixed into the seed so the splits never share a stream


# --- the IDX files ------------------------------------------------------------

def dataset_root(root: str | Path | None = None) -> Path:
    """The folder holding the four IDX .gz files: argument, else $SGE_VIZ_FASHION_MNIST, else Debian's."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ENV_ROOT) or DEFAULT_ROOT)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise SGEVizError(f"{path} is not an unsigned-byte IDX file: reinstall dataset-fashion-mnist.")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise SGEVizError(f"{path} is truncated ({arr.size} of {int(np.prod(shape))} values): "
                          "reinstall dataset-fashion-mnist.")
    return arr.reshape(shape)


@lru_cache(maxsize=4)
def load_split(split: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split: "train" or "test" (t10k)."""
    if split not in SPLITS:
        raise SGEVizError(f"Unknown split {split!r}: use 'train' or 'test'.")
    folder = dataset_root(root)
    prefix = SPLITS[split]
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.is_file():
            raise SGEVizError(
                f"Fashion-MNIST file {path} is missing. Install the data with "
                f"`apt-get install dataset-fashion-mnist`, or point ${ENV_ROOT} (or the root argument) "
                "at a folder holding the four IDX .gz files.")
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise SGEVizError(f"Fashion-MNIST files in {folder} do not match each other: reinstall the package.")
    return images, labels.astype(np.int64)


# --- scene description and rendering ---------------------------------------------

@dataclass(frozen=True)
class ClutterConfig:
    """How a scene is drawn. The defaults are what the shipped demo model was trained on."""

    canvas: int = 64
    item_size: tuple[int, int] = (32, 46)  # side of the resized 28x28 item, pixels
    clutter_count: tuple[int, int] = (2, 5)  # patches cut from other items
    patch_size: tuple[int, int] = (8, 12)  # side of a clutter patch on the canvas
    alpha_threshold: float = 0.2  # item/patch pixels above this intensity are opaque
    noise_strength: float = 0.15  # amplitude of the textured background noise
    clutter_contrast: float = 0.6  # clutter colour blended this far from the canvas under it (1 = opaque colour)


@dataclass(frozen=True)
class Patch:
    """A square crop of a 28x28 source image, resized and pasted opaquely where it is bright."""

    source: int  # index into the split
    crop: tuple[int, int, int]  # top, left, side in the 28x28 source
    size: int  # side on the canvas
    top: int
    left: int
    tint: tuple[float, float, float]


@dataclass(frozen=True)
class SceneSpec:
    item: Patch  # crop = the whole 28x28 item
    clutter: tuple[Patch, ...]
    background: tuple[float, float, float]
    noise_seed: int


@dataclass
class Sample:
    """One rendered scene: the canvas, the item's class, and exact pixel masks."""

    image: np.ndarray  # (S, S, 3) uint8
    label: int
    item_mask: np.ndarray  # (S, S) bool: pixels where the item is visible
    clutter_mask: np.ndarray  # (S, S) bool: pixels covered by clutter and not by the item
    split: str
    index: int
    spec: SceneSpec = field(repr=False)

    @property
    def class_name(self) -> str:
        return FASHION_MNIST_CLASSES[self.label]


def _tint(rng: np.random.Generator) -> tuple[float, float, float]:
    # Saturated-ish random colour that stays bright enough to see on the background.
    rgb = rng.uniform(0.25, 1.0, size=3)
    rgb[rng.integers(3)] = rng.uniform(0.75, 1.0)
    return tuple(float(v) for v in rgb)


def sample_rng(split: str, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([_SPLIT_CODE[split], seed, index])


def describe_scene(rng: np.random.Generator, n_images: int, cfg: ClutterConfig) -> SceneSpec:
    """Draw every random choice of a scene; rendering is then deterministic."""
    s = cfg.canvas
    item_index = int(rng.integers(n_images))
    size = int(rng.integers(cfg.item_size[0], cfg.item_size[1] + 1))
    item = Patch(item_index, (0, 0, 28), size, int(rng.integers(0, s - size + 1)),
                 int(rng.integers(0, s - size + 1)), _tint(rng))
    clutter = []
    for _ in range(int(rng.integers(cfg.clutter_count[0], cfg.clutter_count[1] + 1))):
        source = int(rng.integers(n_images - 1))
        source += source >= item_index  # always another item
        side = int(rng.integers(9, 17))  # crop side in the source; inner part, where items have pixels
        top, left = (int(v) for v in rng.integers(2, 28 - side - 1, size=2))
        psize = int(rng.integers(cfg.patch_size[0], cfg.patch_size[1] + 1))
        clutter.append(Patch(source, (top, left, side), psize, int(rng.integers(0, s - psize + 1)),
                             int(rng.integers(0, s - psize + 1)), _tint(rng)))
    background = tuple(float(v) for v in rng.uniform(0.0, 0.35, size=3))
    return SceneSpec(item, tuple(clutter), background, int(rng.integers(2**31)))


def _resized_alpha(images: np.ndarray, patch: Patch) -> np.ndarray:
    top, left, side = patch.crop
    crop = images[patch.source, top:top + side, left:left + side]
    pil = Image.fromarray(crop).resize((patch.size, patch.size), Image.BILINEAR)
    return np.asarray(pil, dtype=np.float32) / 255.0


def _background(spec: SceneSpec, cfg: ClutterConfig) -> np.ndarray:
    """Textured noise: smooth coloured blobs plus fine grain, around a base colour."""
    rng = np.random.default_rng(spec.noise_seed)
    s = cfg.canvas
    coarse = rng.uniform(-1, 1, size=(8, 8, 3)).astype(np.float32)
    smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c], "F").resize((s, s), Image.BICUBIC))
                       for c in range(3)], axis=-1)
    grain = rng.uniform(-1, 1, size=(s, s, 1)).astype(np.float32)
    base = np.asarray(spec.background, dtype=np.float32)
    return base + cfg.noise_strength * (0.6 * smooth + 0.4 * grain)


def _paste(canvas: np.ndarray, covered: np.ndarray, images: np.ndarray, patch: Patch, threshold: float,
           contrast: float = 1.0) -> np.ndarray:
    """Paste where the patch is brighter than ``threshold``; returns the patch's canvas mask.

    ``contrast`` < 1 blends the patch's colour with the canvas under it (fainter clutter); the
    covered pixels, and so the mask, stay the same.
    """
    alpha = _resized_alpha(images, patch)
    opaque = alpha > threshold
    region = (slice(patch.top, patch.top + patch.size), slice(patch.left, patch.left + patch.size))
    # Keep the item's texture: shade the tint by the source intensity.
    colour = np.asarray(patch.tint, dtype=np.float32) * (0.35 + 0.65 * alpha[..., None])
    if contrast == 1.0:
        canvas[region][opaque] = colour[opaque]
    else:
        under = canvas[region][opaque]
        canvas[region][opaque] = under + np.float32(contrast) * (colour[opaque] - under)
    mask = np.zeros(covered.shape, dtype=bool)
    mask[region] = opaque
    return mask


def render(spec: SceneSpec, images: np.ndarray, cfg: ClutterConfig,
           with_item: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 (S,S,3), item mask, clutter mask) of a described scene."""
    s = cfg.canvas
    canvas = _background(spec, cfg)
    clutter = np.zeros((s, s), dtype=bool)
    for patch in spec.clutter:
        clutter |= _paste(canvas, clutter, images, patch, cfg.alpha_threshold, cfg.clutter_contrast)
    item = np.zeros((s, s), dtype=bool)
    if with_item:
        item = _paste(canvas, item, images, spec.item, cfg.alpha_threshold)
    image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    return image, item, clutter & ~item


class ClutteredFashionMNIST:
    """Samples of one split: ``ds[i]`` is the same Sample every time for the same (split, seed, i).

    Train scenes use only train-split images (items and clutter alike); test scenes
    only t10k images. ``length`` is how many indices an epoch covers; indices
    beyond it are valid too (fresh scenes), which training uses across epochs.
    """

    def __init__(self, split: str = "train", seed: int = 0, length: int = 60000, root: str | Path | None = None,
                 config: ClutterConfig = ClutterConfig()):
        self.images, self.labels = load_split(split, root)
        self.split, self.seed, self.length, self.config = split, int(seed), int(length), config

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> SceneSpec:
        return describe_scene(sample_rng(self.split, self.seed, index), len(self.images), self.config)

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            raise IndexError(index)
        spec = self.spec(index)
        image, item, clutter = render(spec, self.images, self.config)
        return Sample(image, int(self.labels[spec.item.source]), item, clutter, self.split, index, spec)

    def render_without_item(self, index: int) -> np.ndarray:
        """The canvas of sample ``index`` before the item was pasted (for checking masks)."""
        return render(self.spec(index), self.images, self.config, with_item=False)[0]


def data_stats(dataset: ClutteredFashionMNIST, count: int = 2000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) over the first ``count`` samples."""
    pixels = np.stack([dataset[i].image for i in range(count)]).reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0))


class TorchCluttered:
    """A torch-style Dataset of (normalised (3,S,S) float tensor, label), offset by ``start``.

    ``start`` shifts the indices so each training epoch sees fresh scenes.
    """

    def __init__(self, base: ClutteredFashionMNIST, mean: tuple[float, ...], std: tuple[float, ...], start: int = 0):
        self.base, self.start = base, start
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        import torch

        sample = self.base[self.start + i]
        x = (sample.image.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x), sample.label
