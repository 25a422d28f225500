"""Untrusted checkpoints: code in a pickle never runs, broken files get a clear reason, loaded models stay put."""
from __future__ import annotations

import io
import json
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import DEMO_LIKE_CONFIG, make_tiny_model, save_tiny
from hostile.corpus import encode, pattern
from PIL import Image

from sge_viz.capture.analysis import analyze
from sge_viz.errors import SGEVizError
from sge_viz.models.checkpoint import CONFIG_KEY, read_checkpoint
from sge_viz.models.factory import create_model, find_checkpoints, load_checkpoint
from sge_viz.models.registry import build_model


class Payload:
    """Unpickling this writes ``marker``: the proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _evil_state_dict(marker: Path) -> dict:
    sd = {k: v for k, v in make_tiny_model(config=DEMO_LIKE_CONFIG)[0].state_dict().items()}
    sd["fc.bias"] = Payload(marker)  # hidden among real tensors, as an attacker would
    return sd


EVIL_FORMATS = {
    "torch_zip.pth": lambda p, m: torch.save(_evil_state_dict(m), p),
    "torch_legacy.pth.tar": lambda p, m: torch.save(_evil_state_dict(m), p, _use_new_zipfile_serialization=False),
    "official_dict.pth.tar": lambda p, m: torch.save(
        {"epoch": 100, "arch": "sge_resnet_demo", "state_dict": _evil_state_dict(m), "optimizer": Payload(m)}, p),
    "raw_pickle_p2.pkl": lambda p, m: p.write_bytes(pickle.dumps(_evil_state_dict(m), protocol=2)),
    "raw_pickle_p4.pth": lambda p, m: p.write_bytes(pickle.dumps(_evil_state_dict(m), protocol=4)),
    "bare_payload.pt": lambda p, m: p.write_bytes(pickle.dumps(Payload(m), protocol=2)),
    "named_safetensors.safetensors": lambda p, m: torch.save(_evil_state_dict(m), p),
}


@pytest.mark.parametrize("fmt", sorted(EVIL_FORMATS))
def test_code_in_a_checkpoint_never_runs(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "models" / fmt
    path.parent.mkdir()
    EVIL_FORMATS[fmt](path, marker)

    for load in (read_checkpoint, load_checkpoint, lambda p: create_model(checkpoint_path=p)):
        with pytest.raises(SGEVizError, match="refused"):
            load(path)
    assert find_checkpoints(path.parent) == []  # discovery skips it, silently and safely
    assert not marker.exists(), "loading the checkpoint executed code from it"

    # Control: the payload is live. An unrestricted unpickler does run it.
    if fmt.startswith("raw") or fmt.startswith("bare"):
        pickle.loads(path.read_bytes())
    else:
        torch.load(io.BytesIO(path.read_bytes()), weights_only=False)
    assert marker.read_text() == "code ran"


def test_refusal_message_says_why_when_the_file_holds_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save(_evil_state_dict(tmp_path / "m"), path)
    with pytest.raises(SGEVizError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "could run code" in msg and "state_dict" in msg and str(path) in msg


# --- broken and foreign files -------------------------------------------------

def _good_torch_file(path: Path, legacy: bool = False) -> Path:
    torch.save(make_tiny_model(config=DEMO_LIKE_CONFIG)[0].state_dict(), path, _use_new_zipfile_serialization=not legacy)
    return path


def _truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out = path.with_name(f"cut{int(fraction * 100)}_{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
@pytest.mark.parametrize("form", ["zip.pth", "legacy.pth", "tiny.safetensors"])
def test_truncated_checkpoints_are_named_as_such(tmp_path: Path, form: str, fraction: float) -> None:
    full = tmp_path / form
    if form.endswith(".safetensors"):
        save_tiny(full)
    else:
        _good_torch_file(full, legacy=form.startswith("legacy"))
    assert read_checkpoint(full).state_dict  # the whole file reads fine
    with pytest.raises(SGEVizError, match=r"truncated|corrupt|damaged|not a checkpoint") as err:
        load_checkpoint(_truncate(full, fraction))
    assert "cut" in str(err.value)  # names the file


def _zip_file(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "not weights")
    return path


NOT_CHECKPOINTS = {
    "notes.pth": (lambda p: p.write_text("epoch 3: loss 0.12\n" * 20), "text file"),
    "photo.pth": (lambda p: p.write_bytes(encode(Image.fromarray(pattern(32, 32)), "PNG")), "PNG image"),
    "photo.safetensors": (lambda p: p.write_bytes(encode(Image.fromarray(pattern(32, 32)), "JPEG")), "JPEG image"),
    "noise.pth.tar": (lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "no known checkpoint format"),
    "archive.pth": (_zip_file, "could not be read as a PyTorch file"),
    "config.safetensors": (lambda p: p.write_text(json.dumps({"arch": "sge_resnet50"})), "JSON"),
    "empty.pth": (lambda p: p.write_bytes(b""), "empty"),
    "list.pth": (lambda p: torch.save([torch.ones(3)], p), "not a state_dict"),
    "mixed.pth": (lambda p: torch.save({"w": torch.ones(2), "note": "hello"}, p), "not a state_dict"),
    "complex.pth": (lambda p: torch.save({"w": torch.ones(2, dtype=torch.complex64)}, p), "tensors no SGE-ResNet has"),
}


@pytest.mark.parametrize("name", sorted(NOT_CHECKPOINTS))
def test_files_that_are_not_checkpoints_get_a_reason(tmp_path: Path, name: str) -> None:
    make, reason = NOT_CHECKPOINTS[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(SGEVizError) as err:
        load_checkpoint(path)
    assert reason in str(err.value) and name in str(err.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SGEVizError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_named(tmp_path: Path, bad: float) -> None:
    model, config = make_tiny_model(config=DEMO_LIKE_CONFIG)
    with torch.no_grad():
        model.layer2[1].conv2.weight[0, 0, 0, 0] = bad
    from sge_viz.models.checkpoint import save_safetensors

    path = save_safetensors(model, config, tmp_path / "diverged.safetensors")
    with pytest.raises(SGEVizError, match="NaN or Inf") as err:
        load_checkpoint(path)
    assert "layer2.1.conv2.weight" in str(err.value)


def test_plain_resnet_weights_are_not_taken_for_sge(tmp_path: Path) -> None:
    plain, _ = build_model("sge_resnet18", use_sge=False)  # torchvision's resnet18 layout, no SGE keys
    path = tmp_path / "resnet18.pth"
    torch.save(plain.state_dict(), path)
    with pytest.raises(SGEVizError, match="does not fit sge_resnet18") as err:
        load_checkpoint(path)
    assert "missing" in str(err.value) and ".sge." in str(err.value)


def test_official_dict_with_the_wrong_arch_label(tmp_path: Path) -> None:
    model, _ = build_model("sge_resnet18")
    path = tmp_path / "mislabelled.pth.tar"
    torch.save({"arch": "sge_resnet34", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               path)
    with pytest.raises(SGEVizError, match="does not fit sge_resnet34"):
        load_checkpoint(path)


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "other.pth.tar"
    torch.save({"arch": "resnext50_32x4d", "state_dict": {"fc.weight": torch.ones(2, 2)}}, path)
    with pytest.raises(SGEVizError, match="resnext50_32x4d"):
        load_checkpoint(path)


def test_state_dict_of_unknown_layout(tmp_path: Path) -> None:
    path = tmp_path / "mlp.pth"
    torch.save({"0.weight": torch.ones(4, 4), "0.bias": torch.zeros(4)}, path)
    with pytest.raises(SGEVizError, match="match no known one"):
        load_checkpoint(path)


def _safetensors_with_config(path: Path, config: dict, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    from safetensors.torch import save_file

    tensors = tensors if tensors is not None else {k: v.contiguous() for k, v in make_tiny_model(config=DEMO_LIKE_CONFIG)[0].state_dict().items()}
    save_file(tensors, str(path), metadata={CONFIG_KEY: json.dumps(config)})
    return path


def test_config_asking_for_a_giant_model_is_refused_without_building_it(tmp_path: Path) -> None:
    config = DEMO_LIKE_CONFIG.to_dict()
    # 200k-wide stages would need ~10^12 weights (terabytes) if built for real.
    config["arch_kwargs"] = dict(config["arch_kwargs"], widths=[200_000, 400_000, 800_000], groups=16)
    path = _safetensors_with_config(tmp_path / "giant.safetensors", config)
    rss = psutil.Process().memory_info().rss
    with pytest.raises(SGEVizError, match="does not fit sge_resnet_demo") as err:
        load_checkpoint(path)
    assert "(200000, 3, 3, 3)" in str(err.value)
    assert psutil.Process().memory_info().rss - rss < 200 * 2**20  # nothing giant was allocated


@pytest.mark.parametrize("field,value,reason", [
    ("input_size", 100_000, "input_size"), ("resize_size", 10, "resize_size"),
    ("std", [0.0, 1.0, 1.0], "std"), ("mean", [0.5], "mean"), ("num_classes", 0, "num_classes"),
])
def test_unusable_config_values_are_refused(tmp_path: Path, field: str, value, reason: str) -> None:
    config = dict(DEMO_LIKE_CONFIG.to_dict(), **{field: value})
    path = _safetensors_with_config(tmp_path / "odd.safetensors", config)
    with pytest.raises(SGEVizError, match="unusable model config") as err:
        load_checkpoint(path)
    assert reason in str(err.value)


def test_config_whose_groups_do_not_divide_the_widths_fails_at_load(tmp_path: Path) -> None:
    config = DEMO_LIKE_CONFIG.to_dict()
    config["arch_kwargs"] = dict(config["arch_kwargs"], groups=5)  # 32 channels cannot split into 5 groups
    model, _ = build_model("sge_resnet_demo", DEMO_LIKE_CONFIG.__class__.from_dict(config))
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = _safetensors_with_config(tmp_path / "groups.safetensors", config, tensors)
    with pytest.raises(SGEVizError, match="cannot run"):
        load_checkpoint(path)


def test_unreadable_config_metadata(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "meta.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={CONFIG_KEY: "{not json"})
    with pytest.raises(SGEVizError, match="unreadable"):
        load_checkpoint(path)


# --- isolation: a new load never touches a model in use -------------------------

def _outputs(loaded, images: list[Image.Image]) -> list[tuple[list, list]]:
    out = []
    for image in images:
        a = analyze(loaded, image)
        out.append(([p.probability for p in a.predictions], [layer.gate.copy() for layer in a.layers]))
    return out


def _same(x: list[tuple[list, list]], y: list[tuple[list, list]]) -> bool:
    return all(px == py and all(np.array_equal(g, h) for g, h in zip(gx, gy)) for (px, gx), (py, gy) in zip(x, y))


def test_loading_another_checkpoint_leaves_a_model_in_use_unchanged(tmp_path: Path) -> None:
    images = [Image.fromarray(pattern(64 + 8 * i, 64)) for i in range(3)]
    path_a = save_tiny(tmp_path / "a.safetensors", seed=0)
    model_a = load_checkpoint(path_a)
    before = _outputs(model_a, images)
    weights_a = {k: v.clone() for k, v in model_a.model.state_dict().items()}

    model_b = load_checkpoint(save_tiny(tmp_path / "b.safetensors", seed=1))
    # Even overwriting A's own file with B's weights and loading it again must not reach model A.
    save_tiny(path_a, seed=1)
    reloaded = load_checkpoint(path_a)

    assert not _same(before, _outputs(model_b, images))  # B really is a different model
    assert _same(_outputs(reloaded, images), _outputs(model_b, images))
    assert _same(before, _outputs(model_a, images))
    assert all(torch.equal(v, weights_a[k]) for k, v in model_a.model.state_dict().items())
    assert model_b.model is not model_a.model and reloaded.model is not model_a.model


def test_loading_while_another_thread_analyses(tmp_path: Path) -> None:
    images = [Image.fromarray(pattern(64, 64 + 8 * i)) for i in range(4)]
    model_a = load_checkpoint(save_tiny(tmp_path / "a.safetensors", seed=0))
    expected = _outputs(model_a, images)
    results: list[bool] = []

    def serve() -> None:
        for _ in range(5):
            results.append(_same(expected, _outputs(model_a, images)))

    worker = threading.Thread(target=serve)
    worker.start()
    for seed in range(1, 5):
        load_checkpoint(save_tiny(tmp_path / f"b{seed}.safetensors", seed=seed))
    worker.join(timeout=120)
    assert results == [True] * 5
