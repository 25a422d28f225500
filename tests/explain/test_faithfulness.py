"""Deletion and insertion: every curve recomputed image by image, verdicts on a network whose evidence is known."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, structured_image
from torch import nn

from sge_viz.capture.preprocess import center_crop_view, normalise
from sge_viz.errors import SGEVizError
from sge_viz.explain import explain
from sge_viz.explain import faithfulness as fm
from sge_viz.explain.faithfulness import (
    AT_EVIDENCE,
    AWAY,
    Band,
    Removal,
    auc,
    curves_for_orders,
    evidence_faithfulness,
    pixel_order,
    random_band,
    removed_view,
    verdict,
)
from sge_viz.models.config import ModelConfig
from sge_viz.models.loaded import LoadedModel

SIZE = 32


def loaded_tiny() -> LoadedModel:
    model, config = make_tiny_model(seed=2)
    return LoadedModel(model.requires_grad_(False), config, "tiny", "test", torch.device("cpu"))


class Corner(nn.Module):
    """Class 0's logit is 8 x (the top-left quarter's mean brightness - 1) (normalised input), class 1's 0: the
    evidence for class 0 is exactly the top-left quarter."""

    def forward(self, x):
        h, w = x.shape[-2:]
        corner = x[:, :, : h // 2, : w // 2].mean(dim=(1, 2, 3))
        return torch.stack([8 * (corner - 1), torch.zeros_like(corner)], dim=1)


def loaded_corner() -> LoadedModel:
    config = ModelConfig(arch="corner", num_classes=2, input_size=SIZE, resize_size=SIZE,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), class_names=("bright corner", "other"))
    return LoadedModel(Corner().eval(), config, "corner", "test", torch.device("cpu"))


def corner_view(seed: int = 0) -> np.ndarray:
    """A bright top-left quarter with texture on a mid-grey, textured background."""
    rng = np.random.default_rng(seed)
    view = rng.integers(90, 140, (SIZE, SIZE, 3)).astype(np.uint8)
    view[: SIZE // 2, : SIZE // 2] = rng.integers(220, 256, (SIZE // 2, SIZE // 2, 3))
    return view


def corner_map(inverted: bool = False) -> np.ndarray:
    m = np.zeros((8, 8), np.float32)
    m[:4, :4] = 1.0
    m += np.linspace(0, 0.01, 64, dtype=np.float32).reshape(8, 8)  # no ties
    return m.max() - m if inverted else m


def probability_of(loaded: LoadedModel, view: np.ndarray, target: int) -> float:
    """One image at a time, through the public preprocessing: the reference for the batched curves."""
    with torch.inference_mode():
        logits = loaded.model(normalise(view, loaded.config).unsqueeze(0))
    return float(logits.double().softmax(dim=1)[0, target])


def reference_curves(loaded, view, target, order, removal):
    """Deletion and insertion rebuilt pixel by pixel from the order, one forward per point."""
    removed = removed_view(view, removal)
    flat_view, flat_removed = view.reshape(-1, 3), removed.reshape(-1, 3)
    deletion, insertion = [], []
    for f in removal.fractions:
        k = int(round(f * order.size))
        deleted = flat_view.copy()
        deleted[order[:k]] = flat_removed[order[:k]]
        inserted = flat_removed.copy()
        inserted[order[:k]] = flat_view[order[:k]]
        deletion.append(probability_of(loaded, deleted.reshape(view.shape), target))
        insertion.append(probability_of(loaded, inserted.reshape(view.shape), target))
    return np.array(deletion), np.array(insertion)


@pytest.mark.parametrize("removal", [Removal(), Removal("mean", step=0.1), Removal("blur", sigma=0.3, step=0.25)])
def test_curves_equal_a_pixel_by_pixel_recomputation(removal):
    loaded = loaded_tiny()
    view = center_crop_view(structured_image(seed=5), loaded.config.resize_size, loaded.config.input_size)
    s = loaded.config.input_size
    rng = np.random.default_rng(0)
    orders = {"gate-like": pixel_order(rng.random((6, 6)), s, s), "random": rng.permutation(s * s)}
    curves, forwards = curves_for_orders(loaded, view, 3, orders, removal, batch=7)
    n = len(removal.fractions)
    assert forwards == 2 + 2 * 2 * (n - 2)
    for name, order in orders.items():
        deletion, insertion = reference_curves(loaded, view, 3, order, removal)
        np.testing.assert_allclose(curves[name].deletion, deletion, atol=1e-6)
        np.testing.assert_allclose(curves[name].insertion, insertion, atol=1e-6)
        got = curves[name].insertion
        expected = sum((removal.fractions[i + 1] - removal.fractions[i]) * (got[i] + got[i + 1]) / 2
                       for i in range(n - 1))
        assert curves[name].insertion_auc == pytest.approx(expected, abs=1e-12)
        assert curves[name].gap == pytest.approx(curves[name].insertion_auc - curves[name].deletion_auc)


def test_pixel_order_ranks_the_upsampled_map_highest_first():
    m = np.zeros((4, 4), np.float32)
    m[1, 2] = 1.0
    order = pixel_order(m, 16, 16)
    rows, cols = np.divmod(order[:16], 16)
    assert rows.min() >= 3 and rows.max() <= 8 and cols.min() >= 7 and cols.max() <= 12  # around cell (1, 2)
    full = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    np.testing.assert_array_equal(pixel_order(full, 16, 16), np.argsort(-full.ravel(), kind="stable"))
    assert sorted(pixel_order(m, 16, 16)) == list(range(256))


def test_removed_views():
    view = corner_view()
    mean = removed_view(view, Removal("mean"))
    np.testing.assert_array_equal(mean[5, 7], np.rint(view.reshape(-1, 3).mean(0)).astype(np.uint8))
    blurred = removed_view(view, Removal("blur", sigma=1 / 8))
    assert blurred.dtype == np.uint8 and blurred.std() < view.std()  # smoother
    assert abs(float(blurred.mean()) - float(view.mean())) < 2  # a blur keeps the brightness


def test_verdicts_on_a_network_whose_evidence_is_known():
    loaded, view = loaded_corner(), corner_view()
    band = random_band(loaded, [corner_view(s) for s in range(3)], Removal("mean"), seeds=4, targets=[0, 0, 0])
    assert band.low < band.mean < band.high and abs(band.mean) < 0.2
    maps = {"right": corner_map(), "inverted": corner_map(inverted=True), "Grad-CAM": corner_map()}
    result = fm.faithfulness(loaded, view, 0, maps, Removal("mean"), band)
    right, inverted = result.curves["right"], result.curves["inverted"]
    # Removing the corner first removes the evidence at once: the first quarter of deletion falls to the end value.
    assert right.deletion[5] == pytest.approx(right.deletion[-1], abs=1e-6)
    assert right.gap > 0.3 and inverted.gap < -0.3
    assert result.verdicts == {"right": AT_EVIDENCE, "inverted": AWAY, "Grad-CAM": AT_EVIDENCE}
    scores = fm.road_scores(loaded, view, 0, {"right": corner_map(), "inverted": corner_map(inverted=True)})
    assert scores["right"]["most_relevant_first"] < scores["inverted"]["most_relevant_first"]
    assert scores["right"]["combined"] > scores["inverted"]["combined"]


def test_verdict_rules():
    band = Band([-0.1, 0.0, 0.1], 1, 3)  # mean 0, 2 SD ~ 0.163
    assert verdict(-0.2, band, 0.5) == AWAY
    assert verdict(0.1, band, 0.5) == fm.NEAR_RANDOM
    assert verdict(0.3, band, 0.5) == fm.ABOVE_RANDOM  # below 0.9 x Grad-CAM's
    assert verdict(0.46, band, 0.5) == AT_EVIDENCE
    assert verdict(0.18, band, None) == fm.ABOVE_RANDOM  # above the band, below 0.2


def test_band_is_cached_on_disk_and_a_broken_file_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(fm, "_bands", {})
    loaded, views = loaded_corner(), [corner_view(0), corner_view(1)]
    band = fm.cached_band(loaded, views, Removal("mean"), seeds=2)
    files = list((tmp_path / "bands").glob("*.json"))
    assert len(files) == 1 and len(band.gaps) == 4
    monkeypatch.setattr(fm, "_bands", {})
    monkeypatch.setattr(fm, "random_band", lambda *a, **k: pytest.fail("recomputed although cached"))
    assert fm.cached_band(loaded, views, Removal("mean"), seeds=2).gaps == band.gaps
    files[0].write_text("{broken")
    monkeypatch.setattr(fm, "_bands", {})
    monkeypatch.setattr(fm, "random_band", lambda *a, **k: Band([0.5], 1, 1))
    assert fm.cached_band(loaded, views, Removal("mean"), seeds=2).gaps == [0.5]
    assert json.loads(files[0].read_text())["gaps"] == [0.5]
    # Other settings, another key.
    assert fm.cached_band(loaded, views, Removal("mean", step=0.1), seeds=2) is not None
    assert len(list((tmp_path / "bands").glob("*.json"))) == 2


def test_evidence_faithfulness_judges_the_focused_group_mean_gate_cam_and_mask():
    loaded = loaded_tiny()
    evidence = explain(loaded, structured_image(seed=5), ablation=False)
    layer = evidence.layers[-1]
    mask = np.zeros((loaded.config.input_size,) * 2, bool)
    mask[10:30, 5:25] = True
    result = evidence_faithfulness(loaded, evidence, mask=mask, band=Band([-0.05, 0.05], 1, 2))
    top = evidence.ranked(layer)[0]
    assert (result.layer, result.group) == (layer, top)
    assert list(result.curves) == [f"{layer} group {top}", f"{layer} mean gate", "Grad-CAM", "mask"]
    assert set(result.verdicts) == set(result.curves)
    s = loaded.config.input_size
    expected, _ = curves_for_orders(loaded, evidence.image, evidence.target.index,
                                    {"m": pixel_order(evidence.gates[layer].mean(0), s, s)})
    np.testing.assert_allclose(result.curves[f"{layer} mean gate"].deletion, expected["m"].deletion, atol=1e-12)
    block = evidence.to_json()
    assert "faithfulness" not in block
    evidence.faithfulness = result
    block = json.loads(json.dumps(evidence.to_json()))["faithfulness"]
    assert block["layer"] == layer and block["group"] == top and len(block["fractions"]) == 21
    assert block["maps"]["Grad-CAM"]["deletion_auc"] == pytest.approx(auc(result.removal.fractions,
                                                                          result.curves["Grad-CAM"].deletion))
    other = evidence_faithfulness(loaded, evidence, layer=evidence.layers[0], group=1)
    assert list(other.curves)[0] == f"{evidence.layers[0]} group 1" and other.verdicts == {}


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="noise"), "Unknown removal"), (dict(step=0.0), "removal step"), (dict(step=0.6), "removal step"),
    (dict(sigma=0.0), "sigma"),
])
def test_bad_settings_say_what_is_wrong(kwargs, message):
    with pytest.raises(SGEVizError, match=message):
        Removal(**kwargs)


def test_bad_layer_or_group_say_what_exists():
    loaded = loaded_tiny()
    evidence = explain(loaded, structured_image(seed=5), ablation=False)
    with pytest.raises(SGEVizError, match="this model's are"):
        evidence_faithfulness(loaded, evidence, layer="nope")
    with pytest.raises(SGEVizError, match="groups 0 to"):
        evidence_faithfulness(loaded, evidence, group=99)
