"""Fashion-MNIST scenes: one Fashion-MNIST item on a canvas among clutter, with exact masks.

Two generators. ``ClutteredFashionMNIST`` (``ClutterConfig``) is the one the shipped demo model
was trained on: a 64x64 canvas, dark textured noise, a few faint patches; its defaults stay
exactly as they were, pixel for pixel. ``WildFashionMNIST`` (``SceneConfig``, the "wild" recipe)
randomises what people's images vary in: canvas size (48-160 px, resized to the model's input by
the consumer), item scale relative to it, polarity and colour (light on dark, dark on light,
tinted or grey), background (noise texture, smooth gradient, plain light shop-style, or a crop of
a shipped photo of the split's own photo set, see ``photos``), 0-12 clutter fragments of varied
size, opacity and brightness, mild rotation, blur and JPEG compression.

Each sample is drawn from its own random generator seeded by (split, seed, index),
so any sample can be regenerated alone, in any order, in any worker process.
A scene is first described (``SceneSpec``: which images, where, which colours)
and then rendered; rendering the same spec without the item gives the canvas
the item was pasted onto, which is how the masks are checked.

Compositing is opaque: the item covers exactly the pixels of its silhouette
(``item_mask``) and is drawn last, so the item mask is exactly the pixels where
the item is visible (for the randomised scenes: before blur and JPEG, which act
on the finished canvas and move nothing). ``clutter_mask`` is the pixels covered by clutter patches
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

from sge_viz.errors import SGEVizError

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
    spec: SceneSpec | WildSpec = field(repr=False)

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


# --- randomised scenes ("wild" recipe) ---------------------------------------------

BACKGROUND_KINDS = ("noise", "gradient", "plain", "photo")
_PAD = 3  # zero margin around the 28x28 source before rotation, so rotated items keep their corners


@dataclass(frozen=True)
class SceneConfig:
    """The randomised scene distribution of the "wild" recipe; every range is inclusive.

    A scene is drawn on a square canvas of a random side (``canvas``), then (by its consumer) resized
    to the model's input. The item's side is a fraction of the canvas (``item_frac``, of the item's
    28x28 source padded to 34x34). Backgrounds are drawn with the weights ``background_weights``
    over ``BACKGROUND_KINDS``; photo backgrounds come from the split's own photo set
    (``training.photos``: train scenes from the train photos, test scenes from the test photos).
    """

    canvas: tuple[int, int] = (48, 160)
    item_frac: tuple[float, float] = (0.35, 0.85)
    dark_item: float = 0.5  # probability of a dark item on a light background (else light on dark)
    grey_item: float = 0.35  # probability of an untinted (grey/white/black) item
    background_weights: tuple[float, float, float, float] = (0.3, 0.25, 0.2, 0.25)  # noise, gradient, plain, photo
    clutter_count: tuple[int, int] = (0, 12)
    clutter_frac: tuple[float, float] = (0.12, 0.35)  # fragment side / canvas side
    clutter_opacity: tuple[float, float] = (0.25, 1.0)
    clutter_brightness: tuple[float, float] = (0.3, 1.0)
    max_rotation: float = 15.0  # degrees, item and fragments
    blur_prob: float = 0.3
    blur_frac: tuple[float, float] = (0.003, 0.012)  # Gaussian radius / canvas side
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    alpha_threshold: float = 0.2  # source pixels above this intensity are opaque

    def __post_init__(self):
        if not 16 <= self.canvas[0] <= self.canvas[1]:
            raise ValueError(f"canvas range {self.canvas} must be increasing and at least 16 px")
        if not 0 < self.item_frac[0] <= self.item_frac[1] <= 1:
            raise ValueError(f"item_frac {self.item_frac} must lie in (0, 1]")
        if len(self.background_weights) != len(BACKGROUND_KINDS) or sum(self.background_weights) <= 0:
            raise ValueError(f"background_weights needs {len(BACKGROUND_KINDS)} weights, not all zero")
        if not 0 <= self.clutter_count[0] <= self.clutter_count[1]:
            raise ValueError(f"clutter_count {self.clutter_count} must be increasing and >= 0")


@dataclass(frozen=True)
class Fragment:
    """A square crop of a 28x28 source (padded to 34x34 for the item), rotated, resized and pasted where the
    source is brighter than the threshold. ``colour``: the ink at full intensity; a ``dark`` fragment is drawn
    as ``1 - (1 - colour) * shade`` (dark on light), else as ``colour * shade``, with
    ``shade = 0.35 + 0.65 * intensity``. ``opacity`` blends it over what lies beneath (1 = opaque)."""

    source: int
    crop: tuple[int, int, int]  # top, left, side in the (padded, for the item) source
    size: int
    top: int
    left: int
    angle: float
    colour: tuple[float, float, float]
    dark: bool
    opacity: float = 1.0


@dataclass(frozen=True)
class WildSpec:
    """Every random choice of one randomised scene; rendering it is deterministic."""

    canvas: int
    item: Fragment
    clutter: tuple[Fragment, ...]
    background: str  # one of BACKGROUND_KINDS
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]  # base/second colour of the background
    photo: int  # index into the split's background crops (photo backgrounds)
    photo_box: tuple[int, int, int]  # top, left, side of the part of the crop used
    angle: float  # gradient direction, radians
    texture: float  # noise amplitude
    noise_seed: int
    blur: float  # Gaussian blur radius in canvas pixels, 0 = none
    jpeg: int  # JPEG quality, 0 = none


def _ink(rng: np.random.Generator, dark: bool, grey: bool, brightness: float = 1.0) -> tuple[float, float, float]:
    if grey:
        level = rng.uniform(0.0, 0.3) if dark else rng.uniform(0.7, 1.0) * brightness
        return (float(level),) * 3
    rgb = rng.uniform(0.0, 0.35, size=3) if dark else rng.uniform(0.25, 1.0, size=3)
    rgb[rng.integers(3)] = rng.uniform(0.55, 0.9) if dark else rng.uniform(0.75, 1.0)
    if not dark:
        rgb = rgb * brightness
    return tuple(float(v) for v in rgb)


def _background_colour(rng: np.random.Generator, light: bool) -> tuple[float, float, float]:
    """A background colour: light (0.55-1) behind dark items, dark (0-0.45) behind light ones, mildly tinted."""
    level = rng.uniform(0.55, 1.0) if light else rng.uniform(0.0, 0.45)
    rgb = np.clip(level + rng.uniform(-0.12, 0.12, size=3), 0.0, 1.0)
    return tuple(float(v) for v in rgb)


def describe_wild(rng: np.random.Generator, n_images: int, n_photos: int, cfg: SceneConfig) -> WildSpec:
    """Draw every random choice of a randomised scene (see SceneConfig)."""
    s = int(rng.integers(cfg.canvas[0], cfg.canvas[1] + 1))
    weights = np.asarray(cfg.background_weights, dtype=np.float64)
    kind = BACKGROUND_KINDS[int(rng.choice(len(BACKGROUND_KINDS), p=weights / weights.sum()))]
    if kind == "plain":  # shop-style: a light plain background behind a dark or coloured item
        dark, grey = True, bool(rng.random() < cfg.grey_item)
    else:
        dark, grey = bool(rng.random() < cfg.dark_item), bool(rng.random() < cfg.grey_item)
    item_index = int(rng.integers(n_images))
    size = max(8, min(s, int(round(rng.uniform(*cfg.item_frac) * s))))
    angle = float(rng.uniform(-cfg.max_rotation, cfg.max_rotation))
    item = Fragment(item_index, (0, 0, 28 + 2 * _PAD), size, int(rng.integers(0, s - size + 1)),
                    int(rng.integers(0, s - size + 1)), angle, _ink(rng, dark, grey), dark)
    clutter = []
    for _ in range(int(rng.integers(cfg.clutter_count[0], cfg.clutter_count[1] + 1))):
        source = int(rng.integers(n_images - 1))
        source += source >= item_index  # always another item
        side = int(rng.integers(9, 17))
        top, left = (int(v) for v in rng.integers(2, 28 - side - 1, size=2))
        psize = max(4, int(round(rng.uniform(*cfg.clutter_frac) * s)))
        fdark = bool(rng.random() < 0.5)
        clutter.append(Fragment(
            source, (top, left, side), psize, int(rng.integers(0, s - psize + 1)), int(rng.integers(0, s - psize + 1)),
            float(rng.uniform(-cfg.max_rotation, cfg.max_rotation)),
            _ink(rng, fdark, bool(rng.random() < cfg.grey_item), float(rng.uniform(*cfg.clutter_brightness))),
            fdark, float(rng.uniform(*cfg.clutter_opacity))))
    light = dark
    if kind == "plain":
        level = rng.uniform(0.85, 1.0)
        base = tuple(float(v) for v in np.clip(level + rng.uniform(-0.04, 0.04, size=3), 0, 1))
        colours = (base, base)
    else:
        colours = (_background_colour(rng, light), _background_colour(rng, light))
    photo = int(rng.integers(n_photos)) if n_photos else 0
    pside = int(rng.integers(48, 129))
    photo_box = (int(rng.integers(0, 129 - pside)), int(rng.integers(0, 129 - pside)), pside)
    grad_angle = float(rng.uniform(0, 2 * np.pi))
    texture = float(rng.uniform(0.03, 0.3))
    noise_seed = int(rng.integers(2**31))
    blur = float(rng.uniform(*cfg.blur_frac) * s) if rng.random() < cfg.blur_prob else 0.0
    jpeg = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)) if rng.random() < cfg.jpeg_prob else 0
    return WildSpec(s, item, tuple(clutter), kind, colours, photo, photo_box, grad_angle, texture, noise_seed,
                    blur, jpeg)


def _wild_background(spec: WildSpec, photos: tuple[np.ndarray, ...]) -> np.ndarray:
    """(S, S, 3) float32 in about [0, 1]."""
    return np.asarray(_background_pixels(spec, photos), dtype=np.float32)


def _background_pixels(spec: WildSpec, photos: tuple[np.ndarray, ...]) -> np.ndarray:
    s = spec.canvas
    rng = np.random.default_rng(spec.noise_seed)
    c0, c1 = (np.asarray(c, dtype=np.float32) for c in spec.colours)
    if spec.background == "noise":
        coarse = rng.uniform(-1, 1, size=(8, 8, 3)).astype(np.float32)
        smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c], "F").resize((s, s), Image.BICUBIC))
                           for c in range(3)], axis=-1)
        grain = rng.uniform(-1, 1, size=(s, s, 1)).astype(np.float32)
        return c0 + spec.texture * (0.6 * smooth + 0.4 * grain)
    if spec.background == "gradient":
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / max(1, s - 1) - 0.5
        t = np.clip(0.5 + xx * np.cos(spec.angle) + yy * np.sin(spec.angle), 0, 1)[..., None]
        grain = rng.uniform(-1, 1, size=(s, s, 1)).astype(np.float32)
        return c0 + t * (c1 - c0) + 0.03 * grain
    if spec.background == "plain":
        grain = rng.uniform(-1, 1, size=(s, s, 1)).astype(np.float32)
        return c0 + 0.01 * grain
    if not photos:
        raise SGEVizError("A photo background needs the background crops: run `python -m training.photos`.")
    top, left, side = spec.photo_box
    crop = Image.fromarray(photos[spec.photo % len(photos)][top:top + side, left:left + side])
    return np.asarray(crop.resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0


def _fragment_alpha(images: np.ndarray, frag: Fragment, item: bool) -> np.ndarray:
    """The fragment's source intensity (size, size) float32 in [0, 1], cropped, rotated and resized."""
    src = images[frag.source].astype(np.float32) / 255.0
    if item:
        src = np.pad(src, _PAD)
    top, left, side = frag.crop
    crop = Image.fromarray(np.ascontiguousarray(src[top:top + side, left:left + side]), "F")
    if frag.angle:
        crop = crop.rotate(frag.angle, resample=Image.BILINEAR)
    out = np.asarray(crop.resize((frag.size, frag.size), Image.BILINEAR), dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def _paste_fragment(canvas: np.ndarray, images: np.ndarray, frag: Fragment, threshold: float,
                    item: bool = False) -> np.ndarray:
    alpha = _fragment_alpha(images, frag, item)
    opaque = alpha > threshold
    region = (slice(frag.top, frag.top + frag.size), slice(frag.left, frag.left + frag.size))
    shade = 0.35 + 0.65 * alpha[..., None]
    ink = np.asarray(frag.colour, dtype=np.float32)
    colour = 1.0 - (1.0 - ink) * shade if frag.dark else ink * shade
    if frag.opacity >= 1.0:
        canvas[region][opaque] = colour[opaque]
    else:
        under = canvas[region][opaque]
        canvas[region][opaque] = under + np.float32(frag.opacity) * (colour[opaque] - under)
    mask = np.zeros(canvas.shape[:2], dtype=bool)
    mask[region] = opaque
    return mask


def degrade(image: np.ndarray, blur: float, jpeg: int) -> np.ndarray:
    """Gaussian blur of radius ``blur`` px (0 = none), then a JPEG round trip at quality ``jpeg`` (0 = none);
    (S, S, 3) uint8 in and out."""
    if not blur and not jpeg:
        return image
    from io import BytesIO

    from PIL import ImageFilter

    pil = Image.fromarray(image)
    if blur:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    if jpeg:
        buffer = BytesIO()
        pil.save(buffer, format="JPEG", quality=int(jpeg))
        buffer.seek(0)
        pil = Image.open(buffer).convert("RGB")
    return np.asarray(pil, dtype=np.uint8).copy()


def render_wild(spec: WildSpec, images: np.ndarray, photos: tuple[np.ndarray, ...], cfg: SceneConfig,
                with_item: bool = True, degraded: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (S,S,3) uint8, item mask (S,S) bool, clutter mask (S,S) bool) of a randomised scene.

    The item is pasted opaquely and last, so its mask is exactly the pixels it covers. Blur and JPEG
    (``degraded``) act on the finished canvas: they soften its pixels but move nothing, so the mask still
    marks where the item is; ``degraded=False`` gives the canvas before them, where the mask is exactly the
    pixels the item changed.
    """
    s = spec.canvas
    canvas = _wild_background(spec, photos)
    clutter = np.zeros((s, s), dtype=bool)
    for frag in spec.clutter:
        clutter |= _paste_fragment(canvas, images, frag, cfg.alpha_threshold)
    item = np.zeros((s, s), dtype=bool)
    if with_item:
        item = _paste_fragment(canvas, images, spec.item, cfg.alpha_threshold, item=True)
    image = np.clip(np.rint(canvas * 255.0), 0, 255).astype(np.uint8)
    if degraded:
        image = degrade(image, spec.blur, spec.jpeg)
    return image, item, clutter & ~item


class WildFashionMNIST:
    """Randomised scenes of one split: ``ds[i]`` is the same Sample every time for the same (split, seed, i).

    Like ClutteredFashionMNIST (same seeding, same Sample), but each scene has its own canvas size
    (``SceneConfig.canvas``), so ``sample.image`` is (S, S, 3) with S varying: resize it to the model's
    input (``view``) before a forward pass; masks stay at canvas resolution. Items and clutter come only
    from the split's own Fashion-MNIST images, photo backgrounds only from the split's own photo set.
    """

    def __init__(self, split: str = "train", seed: int = 0, length: int = 60000, root: str | Path | None = None,
                 config: SceneConfig = SceneConfig()):
        from .photos import load_backgrounds

        self.images, self.labels = load_split(split, root)
        self.photos = load_backgrounds(split) if config.background_weights[3] > 0 else ()
        self.split, self.seed, self.length, self.config = split, int(seed), int(length), config

    def __len__(self) -> int:
        return self.length

    def spec(self, index: int) -> WildSpec:
        return describe_wild(sample_rng(self.split, self.seed, index), len(self.images), len(self.photos),
                             self.config)

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            raise IndexError(index)
        spec = self.spec(index)
        image, item, clutter = render_wild(spec, self.images, self.photos, self.config)
        return Sample(image, int(self.labels[spec.item.source]), item, clutter, self.split, index, spec)

    def render(self, index: int, with_item: bool = True, degraded: bool = True) -> np.ndarray:
        """Sample ``index``'s image, optionally without the item or before blur/JPEG (for checking masks)."""
        return render_wild(self.spec(index), self.images, self.photos, self.config, with_item, degraded)[0]


def view(image: np.ndarray, size: int) -> np.ndarray:
    """A square canvas (S, S, 3) uint8 resized to (size, size, 3) uint8 the way the app does it
    (``center_crop_view``: bilinear, antialiased when shrinking); unchanged when S == size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    from sge_viz.capture.preprocess import center_crop_view

    return center_crop_view(Image.fromarray(image), size, size)


def data_stats(dataset: ClutteredFashionMNIST | WildFashionMNIST, count: int = 2000,
               size: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (in [0, 1] units) over the first ``count`` samples, each resized to
    ``size`` x ``size`` first when ``size`` is given (what the model sees)."""
    images = [dataset[i].image for i in range(count)]
    if size is not None:
        images = [view(im, size) for im in images]
    pixels = np.concatenate([im.reshape(-1, 3) for im in images]).astype(np.float64) / 255.0
    return tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0))


class TorchCluttered:
    """A torch-style Dataset of (normalised (3,S,S) float tensor, label), offset by ``start``.

    ``start`` shifts the indices so each training epoch sees fresh scenes; ``size`` resizes every
    canvas to the model's input (``view``), which randomised scenes need.
    """

    def __init__(self, base: ClutteredFashionMNIST | WildFashionMNIST, mean: tuple[float, ...],
                 std: tuple[float, ...], start: int = 0, size: int | None = None):
        self.base, self.start, self.size = base, start, size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        import torch

        sample = self.base[self.start + i]
        image = sample.image if self.size is None else view(sample.image, self.size)
        x = (image.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(x), sample.label
