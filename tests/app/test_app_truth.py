"""The example scenes' true classes: shipped beside them as the generator wrote them, shown beside the
prediction with a right/wrong mark, in stats.json for a shipped file only; the page opens on a scene the default
model gets right, and the one it gets wrong is offered last and labelled so."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sge_viz.app.catalogue import ModelService
from sge_viz.app.layout import build_ui
from sge_viz.app.settings import ViewSettings
from sge_viz.app.single_tab import first_example
from sge_viz.capture.analysis import Prediction
from sge_viz.cli import main
from sge_viz.io.examples import (
    DEFAULT_MODEL_MISSES,
    example_classes,
    example_paths,
    file_true_class,
    is_scene,
    is_wild_scene,
    true_class,
    truth_mark,
)
from sge_viz.io.images import open_image
from sge_viz.resources import CLASSES_FILE, examples_dir
from training.assets import write_scenes


@pytest.fixture(scope="module")
def service():
    return ModelService(device="cpu")


def test_classes_file_is_what_the_generator_writes(tmp_path):
    written = write_scenes(tmp_path, "wild")
    generated = json.loads((tmp_path / CLASSES_FILE).read_text(encoding="utf-8"))
    assert set(generated) == {p.name for p in written}
    shipped = example_classes()
    for path in written:
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(examples_dir() / path.name)))
        assert shipped[path.name] == generated[path.name]
    # the generator's picks, by the Fashion-MNIST class numbers of training.assets.WILD_PICKS
    assert [shipped[f"scene_wild_{i:02d}.png"] for i in range(1, 7)] == [
        "T-shirt/top", "Bag", "Sneaker", "Dress", "Ankle boot", "Trouser"]
    assert shipped["scene_02.png"] == "Bag" and shipped["scene_04.png"] == "Sandal"
    # every scene has a class, no photo has one
    assert set(shipped) == {p.name for p in example_paths() if is_scene(p)}


def test_first_example_is_classified_right_and_misses_are_the_real_ones(service):
    first = first_example(service)
    assert first is not None and is_wild_scene(examples_dir() / first.split("/")[-1])
    name = first.split("/")[-1]
    assert name not in DEFAULT_MODEL_MISSES
    analysis = service.run_analysis(service.default, first, name)
    assert analysis.true_class == example_classes()[name] == analysis.predictions[0].label
    # the list of misses is what the default model does on its scenes today; at least one is kept
    wild = [p for p in example_paths() if is_wild_scene(p)]
    misses = {p.name for p in wild
              if service.run_analysis(service.default, p, p.name).predictions[0].label != example_classes()[p.name]}
    assert misses == set(DEFAULT_MODEL_MISSES) and misses
    assert wild[-1].name in misses  # offered after the scenes it gets right


def test_right_and_wrong_marks(service):
    assert truth_mark("Bag", [Prediction(8, "Bag", 0.99)]) == "true class: Bag ✓"
    assert truth_mark("T-shirt/top", [Prediction(5, "Sandal", 0.31)]) == "true class: T-shirt/top ✗ (model says Sandal)"
    assert truth_mark(None, [Prediction(8, "Bag", 0.99)]) == ""
    h = build_ui(service).handlers
    for name, want in (("scene_wild_02.png", "true class: Bag ✓"),
                       ("scene_wild_01.png", "true class: T-shirt/top ✗ (model says Sandal)"),
                       ("chelsea.jpg", "")):
        path = examples_dir() / name
        out = h.show_image({"path": str(path), "orig_name": "upload.png"}, service.default, ViewSettings())
        assert out[h.c.truth] == want


def test_stats_json_true_class_only_for_the_shipped_file(tmp_path, capsys):
    shipped = examples_dir() / "scene_wild_02.png"
    same = tmp_path / "same" / "scene_wild_02.png"
    changed = tmp_path / "changed" / "scene_wild_02.png"
    same.parent.mkdir()
    changed.parent.mkdir()
    shutil.copy(shipped, same)
    pixels = np.asarray(Image.open(shipped)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(changed)
    assert file_true_class(same) == "Bag" and file_true_class(changed) is None
    assert true_class(open_image(changed)) is None and true_class(open_image(same)) == "Bag"
    for src, sub in ((same, "a"), (changed, "b")):
        code = main(["analyze", str(src), "--out", str(tmp_path / sub), "--no-pictures", "--device", "cpu"])
        assert code == 0
    out = capsys.readouterr().out
    assert "true class: Bag, right" in out and out.count("true class") == 1
    assert json.loads((tmp_path / "a" / "scene_wild_02" / "stats.json").read_text())["true_class"] == "Bag"
    assert "true_class" not in json.loads((tmp_path / "b" / "scene_wild_02" / "stats.json").read_text())


def test_gallery_label_marks_the_miss():
    from sge_viz.io.examples import misses_caption

    wild = [p for p in example_paths() if is_wild_scene(p)]
    assert misses_caption(wild) == "last: a T-shirt/top the default model gets wrong"
    assert misses_caption([p for p in example_paths() if is_scene(p) and not is_wild_scene(p)]) == ""
