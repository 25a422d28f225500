"""The sanity check: the cascade's order and re-initialisation, Spearman and SSIM recomputed, class sensitivity."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, save_tiny, structured_image
from torch import nn

from sge_viz.capture.preprocess import center_crop_view
from sge_viz.cli import main
from sge_viz.explain import explain
from sge_viz.explain.sanity import cascade_parts, reinitialise, sanity, spearman, ssim
from sge_viz.models.loaded import LoadedModel, weights_digest
from sge_viz.models.sge import SpatialGroupEnhance


def loaded_tiny() -> LoadedModel:
    model, config = make_tiny_model(seed=3)
    return LoadedModel(model.requires_grad_(False), config, "tiny", "test", torch.device("cpu"))


def views_for(loaded: LoadedModel, n: int = 3) -> list[np.ndarray]:
    c = loaded.config
    return [center_crop_view(structured_image(seed=s), c.resize_size, c.input_size) for s in range(n)]


def test_spearman_and_ssim_match_their_definitions():
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 5)), rng.random((5, 5))
    ranks = [np.argsort(np.argsort(m.ravel())).astype(float) for m in (a, b)]
    assert spearman(a, b) == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    assert np.isnan(spearman(np.ones((3, 3)), b[:3, :3]))
    assert ssim(a, a, 20, 20) == pytest.approx(1.0)
    assert ssim(a, 1 - a, 20, 20) < 0.5


def test_the_cascade_runs_head_to_stem_and_keeps_or_redraws_sge():
    loaded = loaded_tiny()
    parts = cascade_parts(loaded.model)
    assert parts[0] == "fc" and parts[-1] == "conv1" and parts.index("layer3") < parts.index("layer1")
    for variant in ("kept", "redrawn"):
        model = make_tiny_model(seed=3)[0]
        before = {k: v.clone() for k, v in model.state_dict().items()}
        sge = [m for m in model.modules() if isinstance(m, SpatialGroupEnhance)]
        reinitialise(model.layer3, sge, variant, torch.Generator().manual_seed(0))
        after = model.state_dict()
        for key in before:
            changed = not torch.equal(before[key], after[key])
            if key.startswith("layer3") and key.endswith(("sge.weight", "sge.bias")):
                assert changed == (variant == "redrawn"), key
            elif key.startswith("layer3") and key.endswith(("conv1.weight", "bn1.running_var")):
                assert changed, key
            elif not key.startswith("layer3"):
                assert not changed, key  # nothing outside the part


def test_sanity_values_recomputed_and_the_model_left_untouched():
    loaded = loaded_tiny()
    digest = weights_digest(loaded.model)
    views = views_for(loaded)
    report = sanity(loaded, views, seed=1)
    assert weights_digest(loaded.model) == digest
    first = report.steps[0]  # only fc re-initialised: every gate is the trained one
    for variant in ("kept", "redrawn"):
        for layer in report.layers:
            np.testing.assert_allclose(first.spearman[variant][layer], 1.0, atol=1e-12)
            np.testing.assert_allclose(first.ssim[variant][layer], 1.0, atol=1e-6)
    # Layers below the re-initialised parts keep their gates; a redrawn SGE in its own stage changes them.
    step = report.own_stage("layer3.0.sge")
    np.testing.assert_allclose(step.spearman["kept"]["layer1.0.sge"], 1.0, atol=1e-12)
    assert np.all(step.spearman["redrawn"]["layer3.0.sge"] < 0.999)
    # One value recomputed by hand: the same cascade on a copy, then the definition.
    model = make_tiny_model(seed=3)[0]
    sge = [m for m in model.modules() if isinstance(m, SpatialGroupEnhance)]
    for i, part in enumerate(cascade_parts(model)[: report.steps.index(step) + 1]):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + i)
            reinitialise(model.get_submodule(part), sge, "kept", torch.Generator().manual_seed(1000 + i))
    gates = {}
    model.layer3[0].sge.register_forward_hook(
        lambda m, i, o: gates.__setitem__("g", torch.sigmoid(_sge_logits(m, i[0]))))
    from sge_viz.capture.preprocess import normalise
    trained = explain(loaded, views[0], ablation=False).gates["layer3.0.sge"].mean(0)
    with torch.inference_mode():
        model(normalise(views[0], loaded.config).unsqueeze(0))
    mine = gates["g"][0].mean(0).numpy()
    assert step.spearman["kept"]["layer3.0.sge"][0] == pytest.approx(spearman(trained, mine), abs=1e-6)


def _sge_logits(m: SpatialGroupEnhance, x: torch.Tensor) -> torch.Tensor:
    """SGE's gate before the sigmoid, (B, G, h, w), written out from the paper."""
    b, c, h, w = x.shape
    x = x.reshape(b * m.groups, -1, h, w)
    xn = (x * x.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True)
    t = xn.reshape(b * m.groups, -1)
    t = (t - t.mean(dim=1, keepdim=True)) / (t.std(dim=1, keepdim=True) + 1e-5)
    t = t.reshape(b, m.groups, h, w)
    return t * m.weight.reshape(1, -1, 1, 1) + m.bias.reshape(1, -1, 1, 1)


def test_class_sensitivity_gates_do_not_change_cam_does():
    loaded = loaded_tiny()
    views = views_for(loaded, 2)
    report = sanity(loaded, views)
    np.testing.assert_allclose(report.class_sensitivity["mean gate"], 1.0, atol=1e-12)
    first = explain(loaded, views[0], ablation=False)
    second = explain(loaded, views[0], target=int(np.argsort(-first.probabilities)[1]), ablation=False)
    assert report.class_sensitivity["Grad-CAM"][0] == pytest.approx(spearman(first.cam, second.cam), abs=1e-9)
    assert any("Not class evidence" in line for line in report.findings())
    doc = json.loads(json.dumps(report.to_json()))
    assert len(doc["steps"]) == len(cascade_parts(loaded.model)) and doc["images"] == 2


def test_cli_sanity_writes_the_report(capsys, tmp_path):
    checkpoint = save_tiny(tmp_path / "m.safetensors", seed=5)
    images = tmp_path / "in"
    images.mkdir()
    for s in range(2):
        structured_image(seed=s).save(images / f"{s}.png")
    out = tmp_path / "out"
    code = main(["sanity", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    doc = json.loads((out / "sanity.json").read_text())
    assert doc["images"] == 2 and doc["findings"] and (out / "sanity.png").stat().st_size > 1000
    for row in doc["summary"]:
        assert row["layer"] in stdout
    assert f"{doc['summary'][-1]['own_kept_spearman']:+.2f} / {doc['summary'][-1]['own_kept_ssim']:.2f}" in stdout
    code = main(["sanity", str(images), "--checkpoint", str(checkpoint), "--json", "--limit", "1"])
    stdout, _ = capsys.readouterr()
    assert code == 0 and json.loads(stdout)["images"] == 1


def test_parameters_without_reset_parameters_are_named_not_silently_kept():
    """A part holding a bare nn.Parameter (no reset_parameters) keeps its trained values: the report says so."""

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(2.0))

        def forward(self, x):
            return x * self.scale

    loaded = loaded_tiny()
    loaded.model.fc = nn.Sequential(Scaled(), loaded.model.fc)
    report = sanity(loaded, views_for(loaded, 1), class_sensitivity=False)
    assert report.not_reset == ["fc.0"]
    assert "Not re-initialised" in report.findings()[0] and "fc.0" in report.findings()[0]
    assert report.to_json()["not_reset"] == ["fc.0"]
