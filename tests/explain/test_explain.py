"""explain(): every number recomputed independently on a second copy of the model and compared."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from conftest import DEMO_LIKE_CONFIG, make_tiny_model, structured_image
from torch import nn

from sge_viz.capture.preprocess import prepare
from sge_viz.errors import SGEVizError
from sge_viz.explain import explain, pearson, resolve_target
from sge_viz.models.factory import LoadedModel
from sge_viz.models.sge import SpatialGroupEnhance


def loaded_tiny(seed: int = 1, config=None) -> LoadedModel:
    model, config = make_tiny_model(seed) if config is None else make_tiny_model(seed, config)
    model.requires_grad_(False).eval()
    return LoadedModel(model, config, "tiny", "test", torch.device("cpu"))


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return loaded_tiny()


@pytest.fixture(scope="module")
def image():
    return structured_image(seed=3)


def sge_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, SpatialGroupEnhance)]


def reference_contributions(loaded: LoadedModel, image, target: int) -> dict[str, np.ndarray]:
    """Autograd on a second copy: d logit_target / d y for every SGE output y at once, then (g * y) per group."""
    model = copy.deepcopy(loaded.model)
    x, _ = prepare(image, loaded.config)
    outputs: dict[str, torch.Tensor] = {}
    for name in sge_names(model):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o))
    x.requires_grad_(True)
    logit = model(x)[0, target]
    names = list(outputs)
    grads = torch.autograd.grad(logit, [outputs[n] for n in names])
    result = {}
    for name, g in zip(names, grads):
        groups = model.get_submodule(name).groups
        result[name] = (g.double() * outputs[name].double()).reshape(groups, -1).sum(1).detach().numpy()
    return result


class FlatSigmoid(nn.Module):
    """The gate replaced by its spatial mean per group: sigmoid, then the mean over (h, w)."""

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(t).mean(dim=(2, 3), keepdim=True)


def reference_ablation(loaded: LoadedModel, image, layer: str, target: int) -> float:
    """A second copy whose one SGE layer has its gate flattened, run end to end."""
    model = copy.deepcopy(loaded.model)
    model.get_submodule(layer).sig = FlatSigmoid()
    x, _ = prepare(image, loaded.config)
    with torch.no_grad():
        return float(model(x).softmax(1)[0, target])


def reference_cam(loaded: LoadedModel, image, target: int) -> np.ndarray:
    """pytorch-grad-cam called directly, as its README shows, on the last residual block of a copy."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = copy.deepcopy(loaded.model).requires_grad_(True)
    stage = getattr(model, f"layer{model.num_stages}")
    x, _ = prepare(image, loaded.config)
    with GradCAM(model=model, target_layers=[stage[-1]]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


@pytest.mark.parametrize("target", [None, 3])
def test_every_number_matches_its_independent_recomputation(tiny, image, target):
    ev = explain(tiny, image, target)
    x, view = prepare(image, tiny.config)
    with torch.no_grad():
        probs = tiny.model(x).softmax(1)[0]
    index = int(probs.argmax()) if target is None else target
    assert ev.target.index == index and ev.target.label == tiny.config.class_name(index)
    assert ev.target.probability == pytest.approx(float(probs[index]), rel=1e-5)
    np.testing.assert_array_equal(ev.image, view)

    # Contributions: (G,) per layer, equal to autograd on a copy.
    want = reference_contributions(tiny, image, index)
    assert ev.layers == sge_names(tiny.model) == list(want)
    for name in ev.layers:
        np.testing.assert_allclose(ev.contributions[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # Not all alike: a mix-up between groups or layers would show.
    assert len({round(float(v), 6) for v in np.concatenate(list(want.values()))}) > 10

    # Ablations: one per layer, each equal to a copy whose gate is flat at that layer, and each a real change.
    assert list(ev.ablation) == ev.layers
    for name in ev.layers:
        want_p = reference_ablation(tiny, image, name, index)
        assert ev.ablation[name] == pytest.approx(want_p, rel=1e-4, abs=1e-6), name
        assert abs(ev.ablation[name] - ev.target.probability) > 1e-6, name

    # The CAM: pytorch-grad-cam itself on the last block; input crop size, float32, in [0, 1], not flat.
    cam = reference_cam(tiny, image, index)
    assert ev.cam.shape == (tiny.config.input_size,) * 2 and ev.cam.dtype == np.float32
    np.testing.assert_allclose(ev.cam, cam, atol=1e-5)
    assert ev.cam.min() >= 0 and ev.cam.max() <= 1
    if target is None:  # for the top-1 class of this model the evidence is somewhere (for class 3 it is nowhere)
        assert ev.cam.max() - ev.cam.min() > 0.5
    assert ev.cam_layer == f"layer{tiny.model.num_stages}.0"


def test_the_demo_layout_and_another_target_too(image):
    loaded = loaded_tiny(seed=4, config=DEMO_LIKE_CONFIG)
    ev = explain(loaded, image, target="class 6")  # by name
    assert ev.target.index == 6 and ev.cam_layer == "layer3.1" and len(ev.layers) == 6
    for name in ("layer1.0.sge", "layer2.0.sge", "layer3.1.sge"):  # first block, a downsampling block, the last
        assert ev.ablation[name] == pytest.approx(reference_ablation(loaded, image, name, 6), rel=1e-4, abs=1e-7)
    want = reference_contributions(loaded, image, 6)
    for name in ev.layers:
        np.testing.assert_allclose(ev.contributions[name], want[name], rtol=1e-4, atol=1e-6)


def test_the_model_is_left_as_it_was(image):
    loaded = loaded_tiny(seed=2)
    model = loaded.model
    x, _ = prepare(image, loaded.config)
    with torch.no_grad():
        before = model(x)
    explain(loaded, image)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), before)
    # A model in training mode with gradients of its own: both come back untouched, and the numbers are the
    # eval-mode ones (BatchNorm running statistics).
    model.train().requires_grad_(True)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    ev = explain(loaded, image, 2)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad and torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    model.eval()
    assert ev.ablation["layer2.0.sge"] == pytest.approx(reference_ablation(loaded, image, "layer2.0.sge", 2),
                                                         rel=1e-4)


def test_inside_inference_mode_and_without_ablations(tiny, image):
    with torch.inference_mode():
        ev = explain(tiny, image, 1, ablation=False)
    assert ev.ablation == {}
    want = reference_contributions(tiny, image, 1)
    for name in ev.layers:
        np.testing.assert_allclose(ev.contributions[name], want[name], rtol=1e-4, atol=1e-6)
    assert all(v["ablation"] == {"probability": None} for v in ev.to_json()["layers"].values())


def test_concurrent_calls_on_one_model_keep_their_own_results(tiny):
    images = [structured_image(seed=s) for s in (10, 11, 12, 13)]
    alone = [explain(tiny, im) for im in images]
    results: dict[int, object] = {}
    errors = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = explain(tiny, images[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, ev in results.items():
        np.testing.assert_allclose(ev.cam, alone[i].cam, atol=1e-6)
        for name in ev.layers:
            np.testing.assert_allclose(ev.contributions[name], alone[i].contributions[name], rtol=1e-5, atol=1e-7)
            assert ev.ablation[name] == pytest.approx(alone[i].ablation[name], rel=1e-5)


def test_json_shape_and_ranking(tiny, image):
    ev = explain(tiny, image, 5)
    doc = ev.to_json()
    assert set(doc) == {"target", "cam", "out_of_domain", "layers"} and doc["out_of_domain"] is None  # no signal
    assert set(doc["target"]) == {"index", "label", "probability"} and doc["target"]["index"] == 5
    assert doc["cam"] == {"layer": ev.cam_layer, "method": "gradcam"}
    assert list(doc["layers"]) == ev.layers
    for name, layer in doc["layers"].items():
        assert set(layer) == {"groups", "ablation"} and set(layer["ablation"]) == {"probability"}
        groups = [g["group"] for g in layer["groups"]]
        values = [g["contribution"] for g in layer["groups"]]
        assert sorted(groups) == list(range(len(ev.contributions[name])))
        assert values == sorted(values, reverse=True)
        assert values == [float(ev.contributions[name][g]) for g in groups]


def test_gate_cam_correlation_is_pearsons_r(tiny, image):
    ev = explain(tiny, image, ablation=False)
    from sge_viz.resize import resize_maps

    name = ev.layers[-2]
    up = resize_maps(ev.gates[name], *ev.cam.shape)
    want = [np.corrcoef(m.ravel(), ev.cam.ravel())[0, 1] for m in up]
    np.testing.assert_allclose(ev.cam_correlation(name), want, rtol=1e-6, atol=1e-9)
    flat = pearson(np.ones((2, 4, 4)), np.arange(16.0).reshape(4, 4))
    assert np.isnan(flat).all()


def test_targets_by_index_or_name_and_clear_errors(tiny):
    config = tiny.config
    assert resolve_target(config, None) is None and resolve_target(config, " ") is None
    assert resolve_target(config, 4) == 4 and resolve_target(config, "7") == 7
    assert resolve_target(config, "item 2") == 2 and resolve_target(config, "ITEM 3") == 3
    for bad, words in ((10, "classes 0 to 9"), ("-1", "classes 0 to 9"), ("nothing", "Unknown target class"),
                       (2.5, "neither")):
        with pytest.raises(SGEVizError, match=words):
            resolve_target(config, bad)


def test_the_verdict_is_the_one_analyze_gives():
    """explain reads the out-of-domain score during its own forward: the same verdict as analyze's."""
    from sge_viz.capture.analysis import analyze
    from sge_viz.io.images import open_image
    from sge_viz.models.factory import create_model
    from sge_viz.resources import examples_dir

    loaded = create_model("sge_resnet_demo", device="cpu")
    for name in ("chelsea.jpg", "scene_01.png"):
        image = open_image(examples_dir() / name)
        got, want = explain(loaded, image).ood, analyze(loaded, image).ood
        assert got.out_of_domain == want.out_of_domain and got.threshold == want.threshold
        assert got.value == pytest.approx(want.value, rel=1e-4, abs=1e-4)
