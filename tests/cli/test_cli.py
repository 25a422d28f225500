"""The sge-viz command line: files written, JSON that parses, one-line errors and exit codes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import structured_image
from PIL import Image

from sge_viz import viz as render
from sge_viz.app.views import mosaic_tile
from sge_viz.capture.analysis import analyze
from sge_viz.capture.recorder import find_sge_layers
from sge_viz.cli import main
from sge_viz.io import export
from sge_viz.io.images import open_image
from sge_viz.metrics.gates import group_stats
from sge_viz.models.factory import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_analyze_writes_consistent_files(capsys, tmp_path, tiny_checkpoint, image_file):
    out = tmp_path / "results"
    code, stdout, stderr = run(capsys, "analyze", image_file, "--checkpoint", tiny_checkpoint, "--out", out,
                               "--device", "cpu", "--all-mosaics")
    assert code == 0, stderr
    folder = out / image_file.stem
    assert str(folder) in stdout
    loaded = load_checkpoint(tiny_checkpoint, device="cpu")
    layers = find_sge_layers(loaded.model)
    names = [n for n, _ in layers]
    expected = {"gates.npz", "stats.json", "overlay.png"} | {f"mosaic_{n}.png" for n in names}
    assert {p.name for p in folder.iterdir()} == expected
    assert leftovers(out) == []

    direct = analyze(loaded, open_image(image_file))
    with np.load(folder / "gates.npz") as npz:
        gates = {k: npz[k] for k in npz.files}
    assert list(gates) == names
    for (name, module), layer in zip(layers, direct.layers):
        arr = gates[name]
        assert arr.dtype == np.float32 and arr.ndim == 3 and arr.shape[0] == module.groups
        assert np.abs(arr - layer.gate).max() < 1e-6

    stats = json.loads((folder / "stats.json").read_text())
    assert [p["index"] for p in stats["predictions"]] == [p.index for p in direct.predictions]
    assert stats["image_size"] == [48, 48]
    for name, arr in gates.items():
        entry = stats["layers"][name]
        assert [entry["groups"], entry["height"], entry["width"]] == list(arr.shape)
        s = group_stats(arr)
        for key in ("mean", "std", "min", "max", "enhanced_share", "selectivity"):
            assert np.allclose(entry[key], getattr(s, key), rtol=0, atol=1e-12), (name, key)

    for name, arr in gates.items():
        picture = np.asarray(Image.open(folder / f"mosaic_{name}.png"))
        rows, cols = render.mosaic_grid(arr.shape[0])
        tile = mosaic_tile(arr.shape[0])  # the page's tiles
        assert picture.shape[1] == cols * (tile + render.GAP) - render.GAP
        assert picture.shape[0] > rows * (tile + render.GAP)  # plus caption and colour bar
    overlay = np.asarray(Image.open(folder / "overlay.png"))
    # A 48 px input is enlarged by the smallest whole factor to at least the page's 320 px: 7 x 48 = 336 px wide.
    assert overlay.shape[1] == 7 * 48 == render.enlarged(direct.image).shape[1] and overlay.shape[2] == 3
    # Under the picture: the inferno colour bar, dark on the left, bright on the right.
    tail = overlay[-80:].astype(int)
    assert ((tail[:, 2].sum(axis=1) < 100) & (tail[:, -3].sum(axis=1) > 400)).any(), "no colour bar under overlay"

    # Without --all-mosaics only the deepest layer's mosaic is drawn, the same picture.
    lean = tmp_path / "lean"
    code, _, stderr = run(capsys, "analyze", image_file, "--checkpoint", tiny_checkpoint, "--out", lean,
                          "--device", "cpu")
    assert code == 0, stderr
    deepest = f"mosaic_{names[-1]}.png"
    assert {p.name for p in (lean / image_file.stem).iterdir()} == {"gates.npz", "stats.json", "overlay.png", deepest}
    assert (lean / image_file.stem / deepest).read_bytes() == (folder / deepest).read_bytes()


def test_analyze_without_pictures_writes_the_same_data_only(capsys, tmp_path, tiny_checkpoint, image_file):
    full, lean = tmp_path / "full", tmp_path / "lean"
    for out, extra in ((full, ()), (lean, ("--no-pictures",))):
        code, _, stderr = run(capsys, "analyze", image_file, "--checkpoint", tiny_checkpoint, "--out", out,
                              "--device", "cpu", *extra)
        assert code == 0, stderr
    assert {p.name for p in (lean / image_file.stem).iterdir()} == {"gates.npz", "stats.json"}
    with np.load(full / image_file.stem / "gates.npz") as a, np.load(lean / image_file.stem / "gates.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert (full / image_file.stem / "stats.json").read_text() == (lean / image_file.stem / "stats.json").read_text()


def test_analyze_folder_with_a_bad_image_keeps_going(capsys, tmp_path, tiny_checkpoint):
    inputs = tmp_path / "in"
    inputs.mkdir()
    structured_image(seed=1).save(inputs / "a.png")
    structured_image(seed=2).save(inputs / "b.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (inputs / "readme.txt").write_text("not an image, not an input")
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "analyze", inputs, "--checkpoint", tiny_checkpoint, "--out", out,
                               "--batch-size", "2", "--json")
    assert code == 1
    report = json.loads(stdout)
    assert sorted(Path(r["image"]).name for r in report["results"]) == ["a.png", "b.jpg"]
    assert [Path(f["image"]).name for f in report["failed"]] == ["broken.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    assert "broken.png" in stderr and all(line.startswith("error: ") for line in stderr.strip().splitlines())


def test_workers_and_batches_give_the_same_gates(capsys, tmp_path, tiny_checkpoint):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        structured_image(seed=10 + i).save(inputs / f"img{i}.png")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert run(capsys, "analyze", inputs, "--checkpoint", tiny_checkpoint, "--out", serial, "--workers", "0",
               "--batch-size", "1")[0] == 0
    assert run(capsys, "analyze", inputs, "--checkpoint", tiny_checkpoint, "--out", parallel, "--workers", "2",
               "--batch-size", "3")[0] == 0
    for i in range(3):
        with np.load(serial / f"img{i}" / "gates.npz") as a, np.load(parallel / f"img{i}" / "gates.npz") as b:
            assert a.files == b.files
            for key in a.files:
                assert np.abs(a[key] - b[key]).max() < 1e-5


def test_same_stem_gets_distinct_folders(capsys, tmp_path, tiny_checkpoint):
    structured_image(seed=1).save(tmp_path / "x.png")
    structured_image(seed=2).save(tmp_path / "x.jpg")
    out = tmp_path / "out"
    assert run(capsys, "analyze", tmp_path / "x.png", tmp_path / "x.jpg", "--checkpoint", tiny_checkpoint,
               "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["x_jpg", "x_png"]


def test_analyze_folder_uses_masks_and_skips_a_wrong_sized_one(capsys, tmp_path, tiny_checkpoint):
    from sge_viz.metrics.localisation import gate_mask_auc

    inputs = tmp_path / "in"
    inputs.mkdir()
    structured_image(seed=1).save(inputs / "a.png")
    structured_image(seed=2).save(inputs / "b.png")
    size = Image.open(inputs / "a.png").size
    mask = np.zeros(size[::-1], bool)
    mask[size[1] // 4: size[1] // 2, size[0] // 3: 2 * size[0] // 3] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(inputs / "a_mask.png")
    Image.new("L", (size[0] + 3, size[1])).save(inputs / "b_mask.png")  # the wrong size
    out = tmp_path / "out"
    code, stdout, stderr = run(capsys, "analyze", inputs, "--checkpoint", tiny_checkpoint, "--out", out)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]  # masks are not analysed as images
    assert "b_mask.png" in stderr and "mask skipped" in stderr and "a_mask.png" not in stderr
    stats_a = json.loads((out / "a" / "stats.json").read_text())
    stats_b = json.loads((out / "b" / "stats.json").read_text())
    assert all("mask_auc" not in layer for layer in stats_b["layers"].values())
    # The AUC recomputed from the library: the mask cropped like the image, the gates of this image.
    loaded = load_checkpoint(tiny_checkpoint, device="cpu")
    direct = analyze(loaded, open_image(inputs / "a.png"))
    from sge_viz.capture.preprocess import center_crop_view

    cropped = center_crop_view(Image.fromarray(mask.astype(np.uint8) * 255), loaded.config.resize_size,
                               loaded.config.input_size) >= 128
    for layer in direct.layers:
        np.testing.assert_allclose(stats_a["layers"][layer.name]["mask_auc"], gate_mask_auc(layer.gate, cropped),
                                   atol=1e-4)  # batched vs single forward: float32 rounding only


def test_info_prints_the_demo_models_domain(capsys):
    from sge_viz.resources import demo_checkpoint

    code, stdout, _ = run(capsys, "info", demo_checkpoint())
    assert code == 0
    assert "Cluttered Fashion-MNIST" in stdout and "Ankle boot" in stdout and "stages + energy" in stdout
    code, stdout, _ = run(capsys, "info", demo_checkpoint(), "--json")
    domain = json.loads(stdout)["domain"]
    assert domain["classes"][9] == "Ankle boot" and domain["input_size"] == 64
    assert domain["ood"]["score"] == "stages + energy" and domain["ood"]["threshold"] > 0
    assert "own generator" in domain["description"]  # the original model says what it is


def test_info_without_a_checkpoint_describes_the_default_model(capsys):
    from sge_viz.resources import scenes_checkpoint

    code, stdout, _ = run(capsys, "info", "--json")
    assert code == 0
    info = json.loads(stdout)
    assert info["path"] == str(scenes_checkpoint()) and "randomised" in info["domain"]["training_data"]
    assert info["domain"]["ood"]["threshold"] == load_checkpoint(scenes_checkpoint(), device="cpu").ood.threshold


def test_info_json(capsys, tiny_checkpoint):
    code, stdout, _ = run(capsys, "info", tiny_checkpoint, "--json")
    assert code == 0
    info = json.loads(stdout)
    loaded = load_checkpoint(tiny_checkpoint, device="cpu")
    assert info["arch"] == "sge_resnet_tiny" and info["parameters"] == loaded.num_parameters
    assert info["input_size"] == 48
    assert [entry["name"] for entry in info["sge_layers"]] == [n for n, _ in find_sge_layers(loaded.model)]
    direct = analyze(loaded, structured_image())
    shapes = [(entry["groups"], entry["height"], entry["width"]) for entry in info["sge_layers"]]
    assert shapes == [layer.gate.shape for layer in direct.layers]


def test_info_text_for_an_official_checkpoint(capsys, tmp_path):
    from sge_viz.models.registry import build_model

    model, _ = build_model("sge_resnet18")
    path = tmp_path / "sge_resnet18.pth.tar"
    torch.save({"epoch": 1, "arch": "sge_resnet18", "best_acc1": 1.0, "optimizer": {},
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    code, stdout, _ = run(capsys, "info", path)
    assert code == 0
    assert "sge_resnet18" in stdout and "11,690,536" in stdout and "layer4.1.sge" in stdout and "7x7" in stdout
    assert "ImageNet" in stdout and "no out-of-domain signal for this model" in stdout  # its domain, no threshold


def test_predict_json(capsys, tiny_checkpoint, image_file):
    code, stdout, _ = run(capsys, "predict", image_file, "--checkpoint", tiny_checkpoint, "--json")
    assert code == 0
    result = json.loads(stdout)
    loaded = load_checkpoint(tiny_checkpoint, device="cpu")
    direct = analyze(loaded, open_image(image_file)).predictions
    assert [p["index"] for p in result["predictions"]] == [p.index for p in direct]
    probs = [p["probability"] for p in result["predictions"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    assert np.allclose(probs, [p.probability for p in direct], atol=1e-6)
    assert result["predictions"][0]["label"] == direct[0].label


@pytest.mark.parametrize("argv, code, fragment", [
    (["analyze", "/nonexistent/img.png", "--model", "sge_resnet18", "--random-weights"], 1, "does not exist"),
    (["dissect", "/nonexistent/set", "--checkpoint", "{ckpt}", "--out", "{out}"], 1, "does not exist"),
    (["predict", "/nonexistent/img.png", "--checkpoint", "{ckpt}"], 1, "does not exist"),
    (["analyze", "{img}", "--checkpoint", "{ckpt}", "--random-weights"], 2, "--random-weights"),
    (["analyze", "{img}", "--batch-size", "0"], 2, "at least 1"),
    (["predict", "{img}", "--frobnicate"], 2, "unrecognized arguments"),
    (["predict", "{img}", "--model", "sge_resnet152"], 1, "--random-weights"),
    (["predict", "{img}", "--model", "not_a_model"], 1, "sge_resnet_demo_scenes (the default"),
    (["info", "{junk}"], 1, "junk.pth"),
    (["predict", "{junk}", "--checkpoint", "{ckpt}"], 1, "junk.pth"),
])
def test_errors_are_one_line_with_exit_codes(capsys, tmp_path, tiny_checkpoint, image_file, argv, code, fragment):
    junk = tmp_path / "junk.pth"
    junk.write_text("definitely not weights")
    argv = [a.format(img=image_file, ckpt=tiny_checkpoint, junk=junk, out=tmp_path / "out") for a in argv]
    got, stdout, stderr = run(capsys, *argv)
    assert got == code
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
    assert stdout == ""


def test_exit_status_130_when_interrupted(capsys, monkeypatch):
    from sge_viz import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.COMMANDS["info"], "run", interrupted)
    code, _, stderr = run(capsys, "info")
    assert code == 130 and stderr.strip() == "error: interrupted"


def test_a_batch_where_every_image_fails_says_nothing_was_written(capsys, tmp_path, tiny_checkpoint):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "never"
    code, _, stderr = run(capsys, "analyze", bad, "--checkpoint", tiny_checkpoint, "--out", out)
    assert code == 1 and "1 of 1 image failed" in stderr and "no results were written" in stderr
    assert not out.exists() or not any(out.iterdir())


def test_failed_write_leaves_nothing_behind(tmp_path, tiny_checkpoint, image_file, monkeypatch):
    loaded = load_checkpoint(tiny_checkpoint, device="cpu")
    analysis = analyze(loaded, open_image(image_file))
    target = tmp_path / "photo"
    export.write_analysis(analysis, target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    calls = {"n": 0}
    real = render.to_png_bytes

    def failing(image, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(image, *a, **k)

    monkeypatch.setattr(render, "to_png_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        export.write_analysis(analysis, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # old results intact
    calls["n"] = 0
    with pytest.raises(OSError):
        export.write_analysis(analysis, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["photo", "photo.jpg", "tiny.safetensors"])


def test_module_entry_point_exit_code(tmp_path):
    missing = tmp_path / "nope.safetensors"
    result = subprocess.run([sys.executable, "-m", "sge_viz", "info", str(missing), "--json"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "does not exist" in result.stderr


def test_help_and_version_import_no_torch():
    """`sge-viz --help` / `--version` answer without importing torch (or gradio): nothing heavy at parse time."""
    for flag in ("--help", "--version"):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "sge_viz", flag], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and ("sge-viz" in result.stdout), result.stderr[-2000:]
        imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith(
            "import time:") and "|" in line}
        assert "sge_viz.cli" in imported  # the measurement itself works
        for heavy in ("torch", "gradio", "matplotlib", "pandas"):
            assert heavy not in imported, f"{flag} imports {heavy}"


def test_the_package_still_exports_its_names_lazily():
    import sge_viz
    from sge_viz.capture.analysis import analyze as direct
    from sge_viz.models.factory import create_model

    assert sge_viz.analyze is direct and sge_viz.create_model is create_model
    assert set(sge_viz.__all__) <= set(dir(sge_viz))
    with pytest.raises(AttributeError):
        sge_viz.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", [None, "sge_resnet_demo", "sge_resnet_demo_scenes"])
def test_info_names_a_model_and_reads_as_a_summary(capsys, name):
    """`info`, `info sge_resnet_demo` and `info sge_resnet_demo_scenes`: labelled lines, numbers from the file."""
    from sge_viz.capture.analysis import sge_layer_shapes
    from sge_viz.models.factory import create_model

    loaded = create_model(name, device="cpu")
    code, stdout, stderr = run(capsys, "info", *([name] if name else []))
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == loaded.name and max(len(line) for line in lines) <= 100  # no 3,000-character line
    labels = {line.split("  ")[0] for line in lines if line and not line.startswith(" ")}
    assert {"architecture", "input", "domain", "trained on", "classes", "accuracy", "out-of-domain",
            "SGE layers"} <= labels
    text = " ".join(stdout.split())
    top1 = json.loads(loaded.metadata["metrics"])["top1"]
    assert f"accuracy {top1:.1%} top-1" in text
    size = loaded.config.input_size
    assert f"input {size}x{size} RGB" in text and f"classes {loaded.config.num_classes}:" in text
    ood = loaded.config.domain()["ood"]
    assert f"above {ood['threshold']:.4g} is flagged" in text
    for layer in sge_layer_shapes(loaded):
        assert f"{layer['name']} {layer['groups']} {layer['height']}x{layer['width']}" in text
    code, stdout, _ = run(capsys, "info", *([name] if name else []), "--json")
    info = json.loads(stdout)
    assert info["name"] == loaded.name and info["metadata"] == loaded.metadata and info["domain"] == \
        loaded.config.domain()


def test_info_of_a_registered_architecture_without_weights(capsys):
    code, stdout, stderr = run(capsys, "info", "sge_resnet18", "--random-weights")
    assert code == 0, stderr
    assert "sge_resnet18 (random weights)" in stdout and "11,690,536 parameters" in stdout
    assert "layer4.1.sge" in stdout and "no out-of-domain signal for this model" in stdout


def test_predict_several_images_with_the_out_of_domain_verdict(capsys, tmp_path):
    """Several images in one call; each with the verdict the library computes for it."""
    from sge_viz.capture.analysis import analyze as library
    from sge_viz.models.factory import create_model
    from sge_viz.resources import examples_dir

    photo, scene = examples_dir() / "chelsea.jpg", examples_dir() / "scene_01.png"
    code, stdout, stderr = run(capsys, "predict", photo, scene, "--model", "sge_resnet_demo", "--json",
                               "--device", "cpu")
    assert code == 0, stderr
    result = json.loads(stdout)
    loaded = create_model("sge_resnet_demo", device="cpu")
    assert result["model"] == loaded.name and result["failed"] == []
    assert [r["image"] for r in result["results"]] == [str(photo), str(scene)]
    for entry, path in zip(result["results"], (photo, scene)):
        direct = library(loaded, open_image(path))
        assert [p["index"] for p in entry["predictions"]] == [p.index for p in direct.predictions]
        assert entry["out_of_domain"]["out_of_domain"] == direct.ood.out_of_domain
        assert entry["out_of_domain"]["value"] == pytest.approx(direct.ood.value, rel=1e-4, abs=1e-4)
    assert result["results"][0]["out_of_domain"]["out_of_domain"] is True  # the cat photo ("Bag 54%")
    assert result["results"][1]["out_of_domain"]["out_of_domain"] is False  # a scene of its generator

    code, stdout, _ = run(capsys, "predict", photo, scene, "--model", "sge_resnet_demo", "--device", "cpu")
    blocks = stdout.split(str(scene))
    assert "OUT OF DOMAIN" in blocks[0] and "Bag" in blocks[0] and "in domain" in blocks[1]


def test_predict_on_a_gates_only_model_says_it_has_no_signal(capsys, tiny_checkpoint, image_file, tmp_path):
    code, stdout, _ = run(capsys, "predict", image_file, "--checkpoint", tiny_checkpoint, "--json")
    assert code == 0 and json.loads(stdout)["out_of_domain"] is None
    code, stdout, _ = run(capsys, "predict", image_file, "--checkpoint", tiny_checkpoint)
    assert "no out-of-domain signal for this model" in stdout
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    code, stdout, stderr = run(capsys, "predict", image_file, junk, "--checkpoint", tiny_checkpoint, "--json")
    result = json.loads(stdout)
    assert code == 1 and len(result["results"]) == 1 and result["failed"][0]["image"] == str(junk)
    assert "junk.png" in stderr


def _strip_colour(path: Path) -> tuple[int, int, int]:
    """The colour of the verdict strip: the top-right pixel of the picture (right of the strip's text)."""
    return tuple(int(v) for v in np.asarray(Image.open(path).convert("RGB"))[2, -3])


def test_pictures_carry_the_out_of_domain_verdict(capsys, tmp_path, tiny_checkpoint, image_file):
    """overlay.png, the mosaic PNG and explain's cam.png are marked: red out of domain, green in, grey when the
    model has no signal; the same verdict as the library's, and the console and evidence.json say it too."""
    from sge_viz.resources import examples_dir
    from sge_viz.viz import verdict

    photo, scene = examples_dir() / "chelsea.jpg", examples_dir() / "scene_01.png"
    out = tmp_path / "analyze"
    code, _, stderr = run(capsys, "analyze", photo, scene, "--model", "sge_resnet_demo", "--out", out,
                          "--device", "cpu")
    assert code == 0, stderr
    colours = {"chelsea": verdict.OUT_BG, "scene_01": verdict.IN_BG}
    for stem, colour in colours.items():
        pictures = [out / stem / "overlay.png", *(out / stem).glob("mosaic_*.png")]
        assert len(pictures) == 2
        for path in pictures:
            assert _strip_colour(path) == colour, path
    code, stdout, _ = run(capsys, "explain", photo, "--model", "sge_resnet_demo", "--out", tmp_path / "ev",
                          "--device", "cpu")
    assert code == 0 and "OUT OF DOMAIN" in stdout
    assert _strip_colour(tmp_path / "ev" / "chelsea" / "cam.png") == verdict.OUT_BG
    evidence = json.loads((tmp_path / "ev" / "chelsea" / "evidence.json").read_text())
    assert evidence["out_of_domain"]["out_of_domain"] is True

    code, stdout, _ = run(capsys, "explain", image_file, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "t")
    assert code == 0 and "no out-of-domain signal for this model" in stdout
    assert json.loads((tmp_path / "t" / image_file.stem / "evidence.json").read_text())["out_of_domain"] is None
    assert _strip_colour(tmp_path / "t" / image_file.stem / "cam.png") == verdict.NONE_BG
