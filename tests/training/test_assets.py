"""The example scenes: regenerated exactly as shipped, and (for the randomised recipe) picked by class only."""
from __future__ import annotations

import numpy as np
from PIL import Image

from sge_viz.io.masks import mask_path
from training import ASSET_DIR
from training.assets import WILD_PICKS, write_scenes
from training.shifts import shift_by_name


def pixels(path):
    return np.asarray(Image.open(path))


def test_cluttered_scenes_regenerate_the_shipped_examples(tmp_path):
    written = write_scenes(tmp_path, "cluttered")
    assert [p.name for p in written] == [f"scene_{i:02d}.png" for i in range(1, 7)]
    for path in written:
        np.testing.assert_array_equal(pixels(path), pixels(ASSET_DIR / path.name))
        np.testing.assert_array_equal(pixels(mask_path(path)), pixels(mask_path(ASSET_DIR / path.name)))


def test_wild_scenes_are_the_first_of_each_picked_class_with_their_masks(tmp_path):
    written = write_scenes(tmp_path, "wild")
    assert len(written) == len(WILD_PICKS)
    for path, (shift_name, label) in zip(written, WILD_PICKS):
        dataset = shift_by_name(shift_name).dataset()
        labels = [int(dataset.labels[dataset.spec(i).item.source]) for i in range(40)]
        index = labels.index(label)  # the first scene of that class, whatever the model does on it
        sample = dataset[index]
        np.testing.assert_array_equal(pixels(path), sample.image)
        np.testing.assert_array_equal(pixels(mask_path(path)) > 0, sample.item_mask)
        assert sample.item_mask.any() and sample.image.shape[:2] == sample.item_mask.shape


def test_the_examples_folder_holds_only_example_images():
    """`sge-viz dissect assets/` walks the folder recursively: it must find the examples and nothing else
    (no screenshots of the project's own pages among them)."""
    from sge_viz.io.examples import example_paths
    from sge_viz.io.inputs import collect
    from sge_viz.resources import examples_dir

    found = collect([examples_dir()])
    assert sorted(item.name for item in found.items) == sorted(p.name for p in example_paths())
    assert all("/" not in item.name for item in found.items)  # no sub-folder of pictures
