"""Cluttered Fashion-MNIST: exact masks, determinism, split separation, clear errors.

Reads the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist, which CI installs).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from sge_viz.errors import SGEVizError
from training.data import (
    FASHION_MNIST_CLASSES,
    ClutterConfig,
    ClutteredFashionMNIST,
    SceneSpec,
    TorchCluttered,
    load_split,
    render,
)

INDICES = range(0, 40)


@pytest.fixture(scope="module")
def train() -> ClutteredFashionMNIST:
    return ClutteredFashionMNIST("train", seed=3, length=1000)


@pytest.fixture(scope="module")
def test_split() -> ClutteredFashionMNIST:
    return ClutteredFashionMNIST("test", seed=3, length=1000)


def expected_item(ds: ClutteredFashionMNIST, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The item's mask and colours recomputed from the 28x28 source image, independently of render()."""
    item = ds.spec(index).item
    src = ds.images[item.source]
    alpha = np.asarray(Image.fromarray(src).resize((item.size, item.size), Image.BILINEAR), np.float32) / 255
    opaque = alpha > ds.config.alpha_threshold
    mask = np.zeros((ds.config.canvas,) * 2, bool)
    mask[item.top:item.top + item.size, item.left:item.left + item.size] = opaque
    colour = np.zeros((ds.config.canvas,) * 2 + (3,), np.float32)
    shade = np.asarray(item.tint, np.float32) * (0.35 + 0.65 * alpha[..., None])
    colour[item.top:item.top + item.size, item.left:item.left + item.size] = shade
    return mask, np.clip(np.rint(colour * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("split", ["train", "test"])
def test_item_mask_is_exactly_the_item(split, train, test_split):
    ds = train if split == "train" else test_split
    for i in INDICES:
        sample = ds[i]
        mask, colour = expected_item(ds, i)
        np.testing.assert_array_equal(sample.item_mask, mask)
        assert mask.sum() > 30  # a real item, not a speck
        # Inside the mask the canvas shows the item's own (tinted) pixels ...
        np.testing.assert_array_equal(sample.image[mask], colour[mask])
        # ... and outside it the canvas is exactly the scene without the item.
        without = ds.render_without_item(i)
        np.testing.assert_array_equal(sample.image[~mask], without[~mask])
        # Removing the item changes (almost) every pixel of its mask: the mask is not too large.
        changed = (sample.image != without).any(-1)
        assert not (changed & ~mask).any()
        assert changed[mask].mean() > 0.97


def test_clutter_mask_is_the_clutter_not_under_the_item(train):
    cfg = train.config
    for i in INDICES:
        sample, spec = train[i], train.spec(i)
        assert not (sample.item_mask & sample.clutter_mask).any()
        background = render(SceneSpec(spec.item, (), spec.background, spec.noise_seed), train.images, cfg,
                             with_item=False)[0]
        without = train.render_without_item(i)
        clutter_all = (without != background).any(-1)
        visible = ~sample.item_mask
        # Every visible pixel the clutter changed is in the clutter mask; the mask holds nothing else
        # but pixels whose clutter colour happens to equal the noise underneath (rare).
        assert not (clutter_all & visible & ~sample.clutter_mask).any()
        extra = sample.clutter_mask & ~clutter_all
        assert extra.sum() <= max(2, 0.01 * sample.clutter_mask.sum())
        # An empty clutter mask only when the item hides every clutter pixel (large items can).
        assert sample.clutter_mask.sum() > 0 or not (clutter_all & visible).any()
    # The scenes stay cluttered: nearly all of them show clutter beside the item.
    assert np.mean([train[i].clutter_mask.any() for i in INDICES]) >= 0.9


def test_deterministic_per_seed_and_index_in_any_order():
    a = ClutteredFashionMNIST("train", seed=11)
    b = ClutteredFashionMNIST("train", seed=11)
    late_first = b[7]
    for i in (3, 7, 12345):
        x, y = a[i], b[i]
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.item_mask, y.item_mask)
        np.testing.assert_array_equal(x.clutter_mask, y.clutter_mask)
        assert x.label == y.label
    np.testing.assert_array_equal(late_first.image, a[7].image)
    other = ClutteredFashionMNIST("train", seed=12)
    assert not np.array_equal(a[3].image, other[3].image)
    assert not np.array_equal(a[3].image, a[4].image)


def test_splits_use_their_own_images_and_streams(train, test_split):
    train_images, train_labels = load_split("train")
    test_images, test_labels = load_split("test")
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.array_equal(train.images, train_images) and np.array_equal(test_split.images, test_images)
    for ds, labels in ((train, train_labels), (test_split, test_labels)):
        for i in INDICES:
            spec = ds.spec(i)
            assert ds[i].label == labels[spec.item.source]
            assert all(p.source != spec.item.source for p in spec.clutter)  # clutter from other items
    # Test scenes draw sources from the whole t10k range only; train from the whole train range.
    test_sources = [test_split.spec(i).item.source for i in range(300)]
    train_sources = [train.spec(i).item.source for i in range(300)]
    assert max(test_sources) < 10000 and max(train_sources) >= 10000
    # Same seed and index in the two splits: unrelated scenes (separate random streams).
    assert train.spec(0) != test_split.spec(0)
    assert train.spec(0).item.size != test_split.spec(0).item.size or train.spec(0).item.top != test_split.spec(0).item.top


def test_labels_cover_all_classes(test_split):
    labels = {test_split[i].label for i in range(200)}
    assert labels == set(range(10))
    assert len(FASHION_MNIST_CLASSES) == 10 and test_split[0].class_name == FASHION_MNIST_CLASSES[test_split[0].label]


def test_missing_data_names_the_package(tmp_path, monkeypatch):
    load_split.cache_clear()
    try:
        with pytest.raises(SGEVizError, match="apt-get install dataset-fashion-mnist"):
            ClutteredFashionMNIST("train", root=tmp_path)
        monkeypatch.setenv("SGE_VIZ_FASHION_MNIST", str(tmp_path))
        with pytest.raises(SGEVizError, match=str(tmp_path)):
            load_split("test")
        with pytest.raises(SGEVizError, match="split"):
            load_split("validation")
    finally:
        load_split.cache_clear()


def test_config_changes_the_scene():
    plain = ClutteredFashionMNIST("test", seed=1, config=ClutterConfig(clutter_count=(0, 0)))
    spec = plain.spec(0)
    assert spec.clutter == ()
    assert not plain[0].clutter_mask.any()
    big = ClutteredFashionMNIST("test", seed=1, config=dataclasses.replace(ClutterConfig(), canvas=96))
    assert big[0].image.shape == (96, 96, 3)


def test_torch_wrapper_normalises_and_offsets(train):
    mean, std = (0.2, 0.3, 0.4), (0.5, 0.25, 0.2)
    wrapped = TorchCluttered(train, mean, std, start=500)
    x, label = wrapped[2]
    sample = train[502]
    assert label == sample.label and tuple(x.shape) == (3, 64, 64)
    back = (x.numpy() * np.array(std).reshape(3, 1, 1) + np.array(mean).reshape(3, 1, 1)) * 255
    np.testing.assert_allclose(back.transpose(1, 2, 0), sample.image, atol=1e-3)
