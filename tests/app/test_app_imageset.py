"""The "Image set" tab's /dissect endpoint, called with gradio_client against a live local server."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np
import pytest
from conftest import served_app, structured_image
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from sge_viz.app.catalogue import ModelService
from sge_viz.capture.analysis import predict
from sge_viz.dissect.engine import run_local
from sge_viz.dissect.summary import summary_dict
from sge_viz.io.examples import example_classes, example_paths, is_scene
from sge_viz.io.images import open_image
from sge_viz.io.inputs import collect
from sge_viz.resources import examples_dir

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def served():
    service = ModelService(device="cpu")
    with served_app(service) as url:
        yield Client(url, verbose=False), service


def test_dissect_endpoint_matches_the_library_on_uploads(served, tmp_path):
    client, service = served
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(4):
        structured_image(80, 70, seed=i).save(folder / f"p{i}.png")
    Image.fromarray(np.pad(np.ones((30, 40), np.uint8) * 255, ((20, 20), (20, 20)))).save(folder / "p0_mask.png")
    uploads = [handle_file(str(p)) for p in sorted(folder.iterdir())]
    summary, fig2, fig3, fig4, report = client.predict(uploads, False, service.default, 3, api_name="/dissect")

    loaded = service.get(service.default)
    want = summary_dict(run_local(loaded, collect([folder]).items, 3, batch_size=8), {})
    assert summary["images"] == want["images"] == 4
    for name, layer in want["layers"].items():
        got = summary["layers"][name]["per_group"]
        for g, w in zip(got, layer["per_group"]):
            assert [t["image"] for t in g["top"]] == [t["image"] for t in w["top"]]
            np.testing.assert_allclose(g["gate_mean"], w["gate_mean"], rtol=1e-9)
            assert (g["mask_auc"] is None) == (w["mask_auc"] is None) and g["mask_images"] == 1
    for path in (fig2, fig3, fig4):
        assert Image.open(path).size[0] > 100
    with zipfile.ZipFile(report) as zf:
        names = set(zf.namelist())
    assert {"summary.json", "index.html"} <= names and any(n.startswith("groups/") for n in names)


def test_dissect_endpoint_example_set_and_errors(served):
    client, service = served
    summary, *_ = client.predict(None, True, service.default, 2, api_name="/dissect")
    deepest = list(summary["layers"].values())[-1]["per_group"]
    scenes = [p for p in example_paths() if is_scene(p)]
    assert len(scenes) == 12  # both demo models' six example scenes, each with its item mask
    # A demo model's example set is its scenes: the photos it has never seen would top every group.
    assert summary["images"] == len(scenes) < len(example_paths())
    assert {t["image"] for g in deepest for t in g["top"]} <= {p.name for p in scenes}
    assert all(g["mask_images"] == len(scenes) for g in deepest)
    # Every example scene carries its true class beside the model's answer, which is the library's top-1.
    loaded = service.get(service.default)
    truths = summary["true_classes"]
    assert truths["count"] == len(scenes) and [i["image"] for i in truths["images"]] == sorted(p.name for p in scenes)
    for entry in truths["images"]:
        said = predict(loaded, open_image(examples_dir() / entry["image"]), k=1)[0]
        assert entry["true_class"] == example_classes()[entry["image"]] and entry["predicted"] == said.label
        assert entry["right"] == (said.label == entry["true_class"])
    assert truths["right"] == sum(i["right"] for i in truths["images"])
    with pytest.raises(AppError, match="No images given"):
        client.predict(None, False, service.default, 2, api_name="/dissect")


def _scene_set(folder):
    """Four pictures, two of them with masks."""
    folder.mkdir()
    for i in range(4):
        structured_image(80, 70, seed=10 + i).save(folder / f"p{i}.png")
    mask = np.pad(np.ones((30, 40), np.uint8) * 255, ((20, 20), (20, 20)))
    for i in (0, 2):
        Image.fromarray(mask).save(folder / f"p{i}_mask.png")
    return sorted(folder.iterdir())


def test_dissect_endpoint_reads_a_zip_like_the_folder(served, tmp_path):
    """A .zip of images and masks gives the summary its unpacked files give; no server path is shown."""
    client, service = served
    files = _scene_set(tmp_path / "set")
    archive = tmp_path / "my set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            zf.write(path, path.name)
        zf.writestr("../escape.png", files[0].read_bytes())  # refused, and named as the visitor named it
    from_zip, fig2, *_ = client.predict([handle_file(str(archive))], False, service.default, 3, api_name="/dissect")
    from_files, *_ = client.predict([handle_file(str(p)) for p in files], False, service.default, 3,
                                    api_name="/dissect")

    assert from_zip["images"] == from_files["images"] == 4
    assert from_zip["layers"] == from_files["layers"]
    assert from_zip["model"] == from_files["model"]
    deepest = list(from_zip["layers"].values())[-1]["per_group"]
    assert all(g["mask_images"] == 2 for g in deepest)
    assert {t["image"] for g in deepest for t in g["top"]} <= {f"p{i}.png" for i in range(4)}
    assert from_zip["skipped"] == [{"input": "my set.zip:../escape.png",
                                    "reason": "member name would escape its folder (absolute or '..'): refused"}]
    assert Image.open(fig2).size[0] > 100
    # The model's file is named, not where the server keeps it; no temporary folder anywhere.
    text = json.dumps(from_zip)
    assert tempfile.gettempdir() not in text and os.sep + "checkpoints" not in text
    assert from_zip["model"]["source"] == os.path.basename(service.get(service.default).source)


def test_dissect_endpoint_errors_name_uploads_not_server_paths(served, tmp_path):
    client, service = served
    empty = tmp_path / "notes.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "no images here")
    with pytest.raises(AppError) as err:
        client.predict([handle_file(str(empty))], False, service.default, 3, api_name="/dissect")
    message = str(err.value)
    assert "Archive notes.zip holds no images" in message
    assert tempfile.gettempdir() not in message and "sge_viz_" not in message

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")
    with pytest.raises(AppError) as err:
        client.predict([handle_file(str(broken))], False, service.default, 3, api_name="/dissect")
    message = str(err.value)
    assert "None of the images could be read: broken.png" in message
    assert tempfile.gettempdir() not in message and "sge_viz_" not in message


def test_dissect_endpoint_faithfulness_option(served, tmp_path, monkeypatch):
    """The option adds summary.json's faithfulness block: the example scenes' gaps, recomputed per image."""
    from sge_viz.capture.preprocess import center_crop_view
    from sge_viz.explain.faithfulness import Removal, image_gaps

    monkeypatch.setenv("SGE_VIZ_CACHE", str(tmp_path))  # the app serves from this process
    client, service = served
    summary, *_ = client.predict(None, True, service.default, 2, True, api_name="/dissect")
    block = summary["faithfulness"]
    scenes = [p for p in example_paths() if is_scene(p)]
    assert block["images"] == len(scenes) and block["random_band"] is not None
    loaded = service.get(service.default)
    c = loaded.config
    gaps = [image_gaps(loaded, center_crop_view(Image.open(p).convert("RGB"), c.resize_size, c.input_size),
                       Removal())["cam"] for p in scenes]
    assert block["cam"]["mean_gap"] == pytest.approx(float(np.mean(gaps)), abs=1e-6)
    for layer in block["layers"].values():
        assert sum(layer["verdicts"].values()) == pytest.approx(1.0)
    plain, *_ = client.predict(None, True, service.default, 2, api_name="/dissect")
    assert "faithfulness" not in plain
