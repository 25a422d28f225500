"""The randomised scenes of the "wild" recipe: exact item masks, the promised variety, determinism,
separate photo sets, and the original generator left bit-identical.

Reads the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist, which CI installs).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from sge_viz.io.masks import mask_path
from sge_viz.resources import examples_dir
from training.data import (
    BACKGROUND_KINDS,
    ClutteredFashionMNIST,
    SceneConfig,
    TorchCluttered,
    WildFashionMNIST,
    data_stats,
    degrade,
    view,
)
from training.photos import BACKGROUND_DIR, TEST_PHOTOS, TRAIN_PHOTOS, crop_paths, load_backgrounds

N = 60


@pytest.fixture(scope="module")
def wild_train() -> WildFashionMNIST:
    return WildFashionMNIST("train", seed=5, length=1000)


@pytest.fixture(scope="module")
def wild_test() -> WildFashionMNIST:
    return WildFashionMNIST("test", seed=5, length=1000)


def expected_item(ds: WildFashionMNIST, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The item's canvas mask and colours recomputed from its 28x28 source with PIL, apart from render_wild."""
    spec = ds.spec(index)
    item, s = spec.item, spec.canvas
    src = np.zeros((34, 34), np.float32)
    src[3:31, 3:31] = ds.images[item.source] / np.float32(255)
    pil = Image.fromarray(src, "F").rotate(item.angle, resample=Image.BILINEAR)
    alpha = np.clip(np.asarray(pil.resize((item.size, item.size), Image.BILINEAR), np.float32), 0, 1)
    opaque = alpha > ds.config.alpha_threshold
    mask = np.zeros((s, s), bool)
    mask[item.top:item.top + item.size, item.left:item.left + item.size] = opaque
    shade = 0.35 + 0.65 * alpha[..., None]
    ink = np.asarray(item.colour, np.float32)
    colour = 1 - (1 - ink) * shade if item.dark else ink * shade
    full = np.zeros((s, s, 3), np.float32)
    full[item.top:item.top + item.size, item.left:item.left + item.size] = colour
    return mask, np.clip(np.rint(full * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("split", ["train", "test"])
def test_item_mask_is_exactly_the_item(split, wild_train, wild_test):
    ds = wild_train if split == "train" else wild_test
    for i in range(N):
        sample = ds[i]
        mask, colour = expected_item(ds, i)
        np.testing.assert_array_equal(sample.item_mask, mask)
        assert mask.sum() > 20
        clean = ds.render(i, degraded=False)
        without = ds.render(i, with_item=False, degraded=False)
        # Before blur/JPEG: the item's own colours inside the mask, the scene without it everywhere else ...
        np.testing.assert_array_equal(clean[mask], colour[mask])
        np.testing.assert_array_equal(clean[~mask], without[~mask])
        # ... and removing it changes (almost) every pixel of the mask: the mask is not too large.
        changed = (clean != without).any(-1)
        assert not (changed & ~mask).any()
        assert changed[mask].mean() > 0.95
        # Blur and JPEG act on the finished canvas only: the same scene, the same mask.
        spec = ds.spec(i)
        np.testing.assert_array_equal(sample.image, degrade(clean, spec.blur, spec.jpeg))
        assert not (sample.item_mask & sample.clutter_mask).any()


def test_scenes_cover_the_promised_variety(wild_train):
    cfg = wild_train.config
    specs = [wild_train.spec(i) for i in range(400)]
    canvases = np.array([s.canvas for s in specs])
    assert canvases.min() >= 48 and canvases.max() <= 160 and canvases.min() < 60 and canvases.max() > 148
    fracs = np.array([s.item.size / s.canvas for s in specs])
    assert fracs.min() >= cfg.item_frac[0] - 0.02 and fracs.max() <= cfg.item_frac[1] + 0.02
    assert {s.background for s in specs} == set(BACKGROUND_KINDS)
    dark = np.array([s.item.dark for s in specs])
    assert 0.3 < dark.mean() < 0.8  # both polarities (plain shop-style backgrounds always get a dark item)
    grey = np.array([len(set(s.item.colour)) == 1 for s in specs])
    assert 0.15 < grey.mean() < 0.6  # untinted and tinted items
    counts = np.array([len(s.clutter) for s in specs])
    assert counts.min() == 0 and counts.max() == 12
    opacities = [f.opacity for s in specs for f in s.clutter]
    assert min(opacities) < 0.35 and max(opacities) > 0.9
    angles = np.array([s.item.angle for s in specs])
    assert np.abs(angles).max() <= cfg.max_rotation and np.abs(angles).max() > 10
    assert 0.2 < np.mean([s.blur > 0 for s in specs]) < 0.4
    jpeg = [s.jpeg for s in specs if s.jpeg]
    assert 0.4 < len(jpeg) / len(specs) < 0.6 and min(jpeg) < 40 and max(jpeg) > 85
    # Polarity is visible: dark items are darker than their surroundings on a light background, and vice versa.
    for i, spec in enumerate(specs[:80]):
        if spec.background in ("gradient", "plain") and not spec.clutter:
            s = wild_train[i]
            inside = s.image[s.item_mask].mean()
            outside = s.image[~s.item_mask].mean()
            assert (inside < outside) == spec.item.dark, i


def test_plain_and_photo_backgrounds_look_their_part(wild_test):
    plain = WildFashionMNIST("test", seed=1, config=dataclasses.replace(
        SceneConfig(), background_weights=(0, 0, 1, 0), clutter_count=(0, 0), blur_prob=0, jpeg_prob=0))
    for i in range(10):
        s = plain[i]
        assert s.image[~s.item_mask].mean() > 0.8 * 255 and s.image[~s.item_mask].std(axis=0).max() < 4
        assert s.image[s.item_mask].mean() < s.image[~s.item_mask].mean()
    photo = WildFashionMNIST("test", seed=1, config=dataclasses.replace(SceneConfig(), background_weights=(0, 0, 0, 1)))
    for i in range(10):
        spec = photo.spec(i)
        crop = photo.photos[spec.photo]
        top, left, side = spec.photo_box
        expected = np.asarray(Image.fromarray(crop[top:top + side, left:left + side]).resize(
            (spec.canvas, spec.canvas), Image.BILINEAR))
        clean = photo.render(i, degraded=False)
        free = ~photo[i].item_mask & ~photo[i].clutter_mask
        np.testing.assert_array_equal(clean[free], expected[free])


def test_deterministic_per_seed_and_index_in_any_order():
    a, b = WildFashionMNIST("test", seed=2), WildFashionMNIST("test", seed=2)
    late = b[123]
    for i in (0, 5, 123):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.item_mask, y.item_mask)
        assert x.label == y.label and a.spec(i) == b.spec(i)
    np.testing.assert_array_equal(late.image, a[123].image)
    assert a.spec(0) != WildFashionMNIST("test", seed=3).spec(0)
    assert a.spec(0) != WildFashionMNIST("train", seed=2).spec(0)


def test_splits_use_their_own_items_and_photos(wild_train, wild_test):
    assert len(wild_train.images) == 60000 and len(wild_test.images) == 10000
    assert wild_train.photos == load_backgrounds("train") and wild_test.photos == load_backgrounds("test")
    for ds in (wild_train, wild_test):
        for i in range(100):
            spec = ds.spec(i)
            assert 0 <= spec.photo < len(ds.photos)
            assert all(f.source != spec.item.source for f in spec.clutter)
            assert ds[i].label == ds.labels[spec.item.source]
    assert max(wild_train.spec(i).item.source for i in range(300)) >= 10000


def test_photo_sets_are_disjoint_and_listed():
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS)
    readme = (BACKGROUND_DIR / "README.md").read_text()
    digests = {}
    for split, names in (("train", TRAIN_PHOTOS), ("test", TEST_PHOTOS)):
        paths = crop_paths(split)
        assert {p.stem.rsplit("_", 1)[0] for p in paths} == set(names)  # every photo of the set, no other
        for name in names:
            assert f"| {split} | `{name}` |" in readme
        for pixels in load_backgrounds(split):
            assert pixels.shape == (128, 128, 3)
            digests.setdefault(pixels.tobytes(), set()).add(split)
    assert all(len(splits) == 1 for splits in digests.values())  # no crop in both sets


def test_original_generator_is_unchanged():
    """The default ClutteredFashionMNIST still draws the shipped example scenes pixel for pixel."""
    from training.evaluate import EVAL_SEED

    ds = ClutteredFashionMNIST("test", seed=EVAL_SEED)
    scene = examples_dir() / "scene_01.png"  # held-out index 0 (assets/README.md)
    np.testing.assert_array_equal(ds[0].image, np.asarray(Image.open(scene).convert("RGB")))
    np.testing.assert_array_equal(ds[0].item_mask, np.asarray(Image.open(mask_path(scene))) > 127)


def test_view_and_stats_for_variable_canvases(wild_test):
    sizes = {wild_test[i].image.shape[0] for i in range(10)}
    assert len(sizes) > 3
    for i in range(10):
        v = view(wild_test[i].image, 64)
        assert v.shape == (64, 64, 3) and v.dtype == np.uint8
    same = np.zeros((64, 64, 3), np.uint8)
    assert view(same, 64) is same
    mean, std = data_stats(wild_test, count=20, size=64)
    pixels = np.concatenate([view(wild_test[i].image, 64).reshape(-1, 3) for i in range(20)]) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)
    x, label = TorchCluttered(wild_test, mean, std, start=3, size=64)[1]
    assert tuple(x.shape) == (3, 64, 64) and label == wild_test[4].label


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="canvas"):
        SceneConfig(canvas=(100, 50))
    with pytest.raises(ValueError, match="item_frac"):
        SceneConfig(item_frac=(0.5, 1.5))
    with pytest.raises(ValueError, match="background_weights"):
        SceneConfig(background_weights=(0, 0, 0, 0))
