"""``sge-viz explain``: the three files per image, exactly the JSON shape, the library's numbers, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny, structured_image
from PIL import Image

from sge_viz.cli import main
from sge_viz.explain import explain
from sge_viz.io.images import open_image
from sge_viz.models.factory import load_checkpoint


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "demo_like.safetensors", seed=7)


def test_explain_writes_the_three_files_with_the_librarys_numbers(capsys, tmp_path, checkpoint):
    images = tmp_path / "in"
    images.mkdir()
    for seed, name in ((1, "first.png"), (2, "second.jpg")):
        structured_image(seed=seed).save(images / name)
    Image.fromarray(np.zeros((90, 120), np.uint8)).save(images / "first_mask.png")  # a mask, not an input
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "explain", images, "--checkpoint", checkpoint, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["first", "second"]  # nothing half-written beside them

    loaded = load_checkpoint(checkpoint, device="cpu")
    size = loaded.config.input_size
    for name, source in (("first", "first.png"), ("second", "second.jpg")):
        folder = out / name
        assert str(folder) in stdout
        assert sorted(p.name for p in folder.iterdir()) == ["cam.npy", "cam.png", "evidence.json"]
        direct = explain(loaded, open_image(images / source))

        cam = np.load(folder / "cam.npy")
        assert cam.dtype == np.float32 and cam.shape == (size, size)
        assert cam.min() >= 0.0 and cam.max() <= 1.0
        np.testing.assert_allclose(cam, direct.cam, atol=1e-6)

        doc = json.loads((folder / "evidence.json").read_text())
        assert set(doc) == {"target", "cam", "out_of_domain", "layers"}
        assert doc["out_of_domain"] == direct.ood  # None: a checkpoint without a measured signal
        assert set(doc["target"]) == {"index", "label", "probability"}
        assert doc["target"]["index"] == direct.target.index and doc["target"]["label"] == direct.target.label
        assert doc["target"]["probability"] == pytest.approx(direct.target.probability, rel=1e-6)
        assert doc["cam"] == {"layer": "layer3.1", "method": "gradcam"}
        assert list(doc["layers"]) == direct.layers
        for layer, entry in doc["layers"].items():
            assert set(entry) == {"groups", "ablation"} and set(entry["ablation"]) == {"probability"}
            assert all(set(g) == {"group", "contribution"} for g in entry["groups"])
            got = {g["group"]: g["contribution"] for g in entry["groups"]}
            np.testing.assert_allclose([got[g] for g in range(len(got))], direct.contributions[layer], rtol=1e-6)
            assert entry["ablation"]["probability"] == pytest.approx(direct.ablation[layer], rel=1e-6)

        picture = np.asarray(Image.open(folder / "cam.png").convert("RGB"))
        assert picture.shape[1] >= 320 and picture.shape[0] > picture.shape[1]  # enlarged, caption + colour bar below


def test_target_by_name_json_output_and_replacing_a_previous_run(capsys, tmp_path, checkpoint):
    image = tmp_path / "photo.png"
    structured_image(seed=5).save(image)
    out = tmp_path / "out"
    (out / "photo").mkdir(parents=True)
    (out / "photo" / "stale.txt").write_text("from an older run")
    code, stdout, stderr = run(capsys, "explain", image, "--checkpoint", checkpoint, "--out", out, "--target",
                               "class 4", "--json", "--device", "cpu")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["failed"] == [] and result["results"][0]["target"]["index"] == 4
    doc = json.loads((out / "photo" / "evidence.json").read_text())
    assert doc["target"]["index"] == 4 and doc["target"]["label"] == "class 4"
    assert not (out / "photo" / "stale.txt").exists()
    assert [p.name for p in out.iterdir()] == ["photo"]


@pytest.mark.parametrize("argv, code, words", [
    (["--target", "42"], 2, "--target: Target class 42 does not exist"),
    (["--target", "no such class"], 2, "Unknown target class"),
    ([], 2, "required: --out"),
])
def test_usage_errors_are_one_line(capsys, tmp_path, checkpoint, argv, code, words):
    image = tmp_path / "photo.png"
    structured_image().save(image)
    out = [] if "required" in words else ["--out", tmp_path / "out"]
    got, stdout, stderr = run(capsys, "explain", image, "--checkpoint", checkpoint, "--device", "cpu", *out, *argv)
    assert got == code and words in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_unreadable_image_fails_alone(capsys, tmp_path, checkpoint):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    structured_image().save(good)
    bad.write_bytes(b"not an image")
    code, stdout, stderr = run(capsys, "explain", good, bad, "--checkpoint", checkpoint, "--out", tmp_path / "out",
                               "--device", "cpu")
    assert code == 1 and "bad.png" in stderr and "1 of 2 images failed" in stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good"]


def test_explain_faithfulness_writes_every_curve_and_says_the_verdicts(capsys, tmp_path, checkpoint, monkeypatch):
    from sge_viz.explain.faithfulness import Removal, evidence_faithfulness, example_band
    from sge_viz.io.feed import crop_mask
    from sge_viz.io.masks import mask_for

    monkeypatch.setenv("SGE_VIZ_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "scene.png"
    structured_image(seed=4).save(image)
    mask = np.zeros((90, 120), np.uint8)
    mask[20:70, 40:100] = 255
    Image.fromarray(mask).save(tmp_path / "scene_mask.png")
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "explain", image, "--checkpoint", checkpoint, "--out", out, "--device", "cpu",
                               "--faithfulness", "--removal-step", "0.1", "--group", "2")
    assert code == 0, stderr
    assert "random band gap" in stderr and list((tmp_path / "cache" / "bands").glob("*.json"))
    folder = out / "scene"
    assert (folder / "faithfulness.png").stat().st_size > 1000
    block = json.loads((folder / "evidence.json").read_text())["faithfulness"]
    loaded = load_checkpoint(checkpoint, device="cpu")
    removal = Removal(step=0.1)
    evidence = explain(loaded, open_image(image), ablation=False)
    cropped = crop_mask(mask_for(image), loaded.config.resize_size, loaded.config.input_size)
    direct = evidence_faithfulness(loaded, evidence, group=2, removal=removal, band=example_band(loaded, removal),
                                   mask=cropped)
    assert block["group"] == 2 and block["removal"] == {"method": "blur", "sigma": 0.125, "step": 0.1}
    assert list(block["maps"]) == list(direct.curves) and "mask" in block["maps"]
    for name, curves in direct.curves.items():
        np.testing.assert_allclose(block["maps"][name]["deletion"], curves.deletion, atol=1e-6)
        np.testing.assert_allclose(block["maps"][name]["insertion"], curves.insertion, atol=1e-6)
        assert block["maps"][name]["verdict"] == direct.verdicts[name]
        assert f"{curves.gap:+6.3f}  {direct.verdicts[name]}" in stdout
    assert block["random_band"]["gaps"] == pytest.approx(direct.band.gaps)


def test_explain_faithfulness_bad_settings_are_usage_errors(capsys, tmp_path, checkpoint):
    image = tmp_path / "a.png"
    structured_image(seed=4).save(image)
    code, _, stderr = run(capsys, "explain", image, "--checkpoint", checkpoint, "--out", tmp_path / "o",
                          "--faithfulness", "--removal-step", "0.7")
    assert code == 2 and "removal step must be in (0, 0.5]" in stderr


def test_explain_faithfulness_band_on_the_users_own_images(capsys, tmp_path, checkpoint):
    from sge_viz.capture.preprocess import center_crop_view
    from sge_viz.explain.faithfulness import Removal, random_band

    own = tmp_path / "own"
    own.mkdir()
    for seed in (11, 12):
        structured_image(seed=seed).save(own / f"{seed}.png")
    image = tmp_path / "a.png"
    structured_image(seed=4).save(image)
    code, _, stderr = run(capsys, "explain", image, "--checkpoint", checkpoint, "--out", tmp_path / "o",
                          "--faithfulness", "--removal-step", "0.25", "--band-images", own)
    assert code == 0, stderr
    assert "random pixel orders on the images of --band-images" in stderr
    band = json.loads((tmp_path / "o" / "a" / "evidence.json").read_text())["faithfulness"]["random_band"]
    loaded = load_checkpoint(checkpoint, device="cpu")
    c = loaded.config
    views = [center_crop_view(open_image(own / f"{s}.png"), c.resize_size, c.input_size) for s in (11, 12)]
    assert band["images"] == 2 and band["gaps"] == pytest.approx(random_band(loaded, views, Removal(step=0.25)).gaps)
