"""Checkpoint forms that must load to identical logits, and broken files that must be refused clearly."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from conftest import perturb

from sge_viz.errors import SGEVizError
from sge_viz.models import (
    create_model,
    find_checkpoints,
    infer_arch,
    load_checkpoint,
    read_checkpoint,
    save_safetensors,
)
from sge_viz.models.registry import build_model


@pytest.fixture(scope="module")
def r18():
    model, config = build_model("sge_resnet18")
    return perturb(model, seed=18), config


@pytest.fixture(scope="module")
def r18_input():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def official_dict(model: torch.nn.Module, arch: str) -> dict:
    """The PytorchInsight training script's checkpoint: DataParallel keys plus training state."""
    return {
        "epoch": 100,
        "arch": arch,
        "state_dict": OrderedDict(("module." + k, v.clone()) for k, v in model.state_dict().items()),
        "best_acc1": torch.tensor(77.58),
        "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                      "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
    }


def logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("form", ["official", "bare_prefixed", "bare", "safetensors"])
def test_round_trip_gives_identical_logits(tmp_path, r18, r18_input, form):
    model, config = r18
    if form == "safetensors":
        path = save_safetensors(model, config, tmp_path / "m.safetensors")
    else:
        path = tmp_path / ("m.pth.tar" if form == "official" else "m.pth")
        state = model.state_dict()
        obj = {"official": lambda: official_dict(model, "sge_resnet18"),
               "bare_prefixed": lambda: {"module." + k: v for k, v in state.items()},
               "bare": lambda: dict(state)}[form]()
        torch.save(obj, path)
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.config.arch == "sge_resnet18"
    assert loaded.num_parameters == 11_690_536
    assert torch.equal(logits(loaded.model, r18_input), logits(model, r18_input))


def test_official_sge_resnet50_round_trip(tmp_path, resnet50):
    model, _ = resnet50
    path = tmp_path / "sge_resnet50.pth.tar"
    torch.save(official_dict(model, "sge_resnet50"), path)
    contents = read_checkpoint(path)
    assert contents.arch == "sge_resnet50"
    assert contents.metadata["epoch"] == "100"
    assert not any(k.startswith("module.") for k in contents.state_dict)
    loaded = load_checkpoint(path, device="cpu")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    assert torch.equal(logits(loaded.model, x), logits(model, x))
    assert loaded.num_parameters == 25_559_080
    assert "sge_resnet50" in loaded.name


def test_arch_is_inferred_from_keys_and_shapes(r18, resnet50):
    assert infer_arch(r18[0].state_dict()) == "sge_resnet18"
    assert infer_arch(resnet50[0].state_dict()) == "sge_resnet50"
    assert infer_arch({"conv1.weight": torch.zeros(8, 3, 3, 3)}) is None


def test_create_model_from_checkpoint_and_random_weights(tmp_path, r18, r18_input):
    model, config = r18
    path = save_safetensors(model, config, tmp_path / "r18.safetensors")
    loaded = create_model(checkpoint_path=path, device="cpu")
    assert torch.equal(logits(loaded.model, r18_input), logits(model, r18_input))
    random = create_model("sge_resnet18", random_weights=True, device="cpu")
    assert "random" in random.name and random.source == "random weights"
    assert not torch.equal(logits(random.model, r18_input), logits(model, r18_input))


def test_registered_name_without_weights_is_an_error():
    with pytest.raises(SGEVizError, match="random-weights"):
        create_model("sge_resnet152", device="cpu")
    with pytest.raises(SGEVizError, match="Unknown model"):
        create_model("resnet_imaginary", device="cpu")


def test_find_checkpoints_recognises_content_not_names(tmp_path, r18):
    model, _ = r18
    torch.save(official_dict(model, "sge_resnet18"), tmp_path / "downloaded_weights.pth.tar")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    torch.save({"a": torch.zeros(2)}, tmp_path / "other.pt")
    found = find_checkpoints(tmp_path)
    assert [(f.path.name, f.arch) for f in found] == [("downloaded_weights.pth.tar", "sge_resnet18")]


# --- broken checkpoints ----------------------------------------------------------

def test_wrong_arch_names_the_mismatch(tmp_path, r18):
    path = tmp_path / "mislabelled.pth.tar"
    torch.save(official_dict(r18[0], "sge_resnet50"), path)
    with pytest.raises(SGEVizError) as err:
        load_checkpoint(path, device="cpu")
    msg = str(err.value)
    assert "does not fit sge_resnet50" in msg and "missing" in msg and "wrong shape" in msg


def test_unknown_arch(tmp_path, r18):
    path = tmp_path / "x.pth.tar"
    torch.save(official_dict(r18[0], "se_resnext_999"), path)
    with pytest.raises(SGEVizError, match="se_resnext_999"):
        load_checkpoint(path, device="cpu")


def test_truncated_file(tmp_path, r18):
    full = tmp_path / "full.pth"
    torch.save(r18[0].state_dict(), full)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SGEVizError, match="truncated"):
        load_checkpoint(cut, device="cpu")


def test_truncated_safetensors(tmp_path, r18):
    full = save_safetensors(*r18, tmp_path / "full.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(SGEVizError, match="truncated"):
        load_checkpoint(cut, device="cpu")


def test_missing_keys_are_listed(tmp_path, r18):
    state = dict(r18[0].state_dict())
    del state["layer4.1.sge.weight"], state["fc.bias"]
    path = tmp_path / "missing.pth"
    torch.save({"arch": "sge_resnet18", "state_dict": state}, path)
    with pytest.raises(SGEVizError) as err:
        load_checkpoint(path, device="cpu")
    msg = str(err.value)
    assert "2 missing" in msg and "layer4.1.sge.weight" in msg and "fc.bias" in msg


def test_unexpected_keys_are_listed(tmp_path, r18):
    state = dict(r18[0].state_dict())
    state["layer1.0.se.fc.weight"] = torch.zeros(4, 64)
    path = tmp_path / "extra.pth"
    torch.save({"arch": "sge_resnet18", "state_dict": state}, path)
    with pytest.raises(SGEVizError, match="1 unexpected: layer1.0.se.fc.weight"):
        load_checkpoint(path, device="cpu")


def test_nan_weights(tmp_path, r18):
    state = {k: v.clone() for k, v in r18[0].state_dict().items()}
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(state, path)
    with pytest.raises(SGEVizError, match=r"NaN or Inf values in layer2\.0\.conv1\.weight"):
        load_checkpoint(path, device="cpu")


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", b"\x89PNG\r\n\x1a\n" + bytes(200)])
def test_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "thing.pth"
    path.write_bytes(content)
    with pytest.raises(SGEVizError, match="thing.pth"):
        load_checkpoint(path, device="cpu")


def test_non_tensor_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "sampler": Path("/")}, path)
    with pytest.raises(SGEVizError, match="could run code"):
        load_checkpoint(path, device="cpu")


def test_list_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(SGEVizError, match="not a state_dict"):
        load_checkpoint(path, device="cpu")


def test_missing_file():
    with pytest.raises(SGEVizError, match="does not exist"):
        load_checkpoint("/nonexistent/sge_resnet50.pth.tar")


def test_safetensors_whose_header_length_starts_like_a_pickle(tmp_path, r18):
    """A header length with 0x80 as its low byte (one file in 256) begins like a pickle's protocol
    opcode; the file is still read as safetensors, under any name."""
    plain = save_safetensors(*r18, tmp_path / "a.safetensors")
    length = int.from_bytes(plain.read_bytes()[:8], "little")
    pad = 0x80 - length % 256 + 256  # enough to reach the next length with low byte 0x80, JSON quoting included
    for extra in range(pad - 40, pad + 40):
        path = save_safetensors(*r18, tmp_path / "b.safetensors.new", {"padding": "x" * extra})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    got = read_checkpoint(path)
    want = read_checkpoint(plain)
    assert got.state_dict.keys() == want.state_dict.keys()
    assert all(torch.equal(got.state_dict[k], want.state_dict[k]) for k in want.state_dict)
