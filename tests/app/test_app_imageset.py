"""The "Image set" tab's /dissect endpoint, called with gradio_client against a live local server."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from conftest import served_app, structured_image
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from sge_viz.app.catalogue import ModelService
from sge_viz.app.examples import example_paths, is_scene
from sge_viz.dissect.engine import run_local
from sge_viz.dissect.inputs import collect
from sge_viz.dissect.summary import summary_dict

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
    assert summary["images"] == len(example_paths())
    deepest = list(summary["layers"].values())[-1]["per_group"]
    scenes = [p for p in example_paths() if is_scene(p)]
    assert len(scenes) == 12  # both demo models' six example scenes, each with its item mask
    assert all(g["mask_images"] == len(scenes) for g in deepest)
    with pytest.raises(AppError, match="No images given"):
        client.predict(None, False, service.default, 2, api_name="/dissect")
