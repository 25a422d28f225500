"""Statistics recomputed independently, and stats.json as a faithful, JSON-safe summary."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from sge_viz.capture.analysis import Analysis, LayerGates, Prediction
from sge_viz.metrics.gates import analysis_stats, depth_profile, group_stats, histogram, selectivity_order


def make_analysis(seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    layers = []
    for name, (g, h, w) in [("layer1.0.sge", (4, 8, 8)), ("layer2.0.sge", (4, 4, 4)), ("layer3.0.sge", (8, 2, 3))]:
        gate = rng.random((g, h, w)).astype(np.float32)
        layers.append(LayerGates(name, gate, rng.normal(size=(g, h, w)).astype(np.float32),
                                 rng.normal(size=(g, h, w)).astype(np.float32)))
    image = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    preds = [Prediction(i, f"class {i}", p) for i, p in zip([3, 1, 4, 0, 2], [0.5, 0.2, 0.15, 0.1, 0.05])]
    return Analysis(image, preds, layers, "tiny (test)")


def test_group_stats_match_per_group_recomputation():
    rng = np.random.default_rng(1)
    gate = rng.random((5, 6, 7)).astype(np.float32)
    s = group_stats(gate)
    for g in range(5):
        values = [float(v) for v in gate[g].ravel()]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        assert s.mean[g] == pytest.approx(mean, abs=1e-12)
        assert s.std[g] == pytest.approx(std, abs=1e-12)
        assert s.min[g] == min(values) and s.max[g] == max(values)
        assert s.enhanced_share[g] == pytest.approx(sum(v > mean for v in values) / len(values))
        assert s.selectivity[g] == pytest.approx(std / mean)


def test_selectivity_orders_peaked_before_flat():
    gate = np.full((3, 10, 10), 0.5, np.float32)
    gate[1, 0, 0] = 0.99  # one enhanced spot: most selective
    gate[2] += np.linspace(-0.05, 0.05, 100, dtype=np.float32).reshape(10, 10)  # gentle ramp
    order = selectivity_order(gate)
    assert order == [1, 2, 0]
    s = group_stats(gate)
    assert s.selectivity[0] == 0 and s.enhanced_share[0] == 0  # flat: nothing above its mean
    assert s.enhanced_share[1] == pytest.approx(0.01)


def test_histogram_counts_every_value_over_the_unit_range():
    gate = np.random.default_rng(2).random((3, 5, 5)).astype(np.float32)
    gate[0, 0, 0] = 1.0
    counts, edges = histogram(gate, bins=10)
    assert counts.sum() == gate.size and edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 11
    assert counts[3] == int(((gate >= 0.3) & (gate < 0.4)).sum())


def test_depth_profile_rows():
    analysis = make_analysis()
    rows = depth_profile(analysis)
    assert [r["name"] for r in rows] == analysis.layer_names
    for row, layer in zip(rows, analysis.layers):
        assert (row["groups"], row["height"], row["width"]) == layer.gate.shape
        assert row["mean"] == pytest.approx(float(layer.gate.astype(np.float64).mean()))
        flat = layer.gate.reshape(layer.groups, -1).astype(np.float64)
        assert row["spread"] == pytest.approx(float(flat.std(axis=1).mean()))
        shares = (flat > flat.mean(axis=1, keepdims=True)).mean(axis=1)
        assert row["enhanced_share"] == pytest.approx(float(shares.mean()))


def test_analysis_stats_is_json_and_faithful():
    analysis = make_analysis()
    stats = json.loads(json.dumps(analysis_stats(analysis), allow_nan=False))
    assert stats["model"] == "tiny (test)" and stats["image_size"] == [32, 32]
    assert stats["predictions"][0] == {"index": 3, "label": "class 3", "probability": 0.5}
    assert list(stats["layers"]) == analysis.layer_names
    for layer in analysis.layers:
        entry = stats["layers"][layer.name]
        assert (entry["groups"], entry["height"], entry["width"]) == layer.gate.shape
        assert "mask_auc" not in entry
        for g in range(layer.groups):
            values = layer.gate[g].astype(np.float64)
            assert entry["mean"][g] == pytest.approx(values.mean(), abs=1e-12)
            assert entry["std"][g] == pytest.approx(values.std(), abs=1e-12)
            assert entry["max"][g] == float(layer.gate[g].max()) and entry["min"][g] == float(layer.gate[g].min())


def test_mask_auc_equals_sklearn_on_upsampled_gates():
    analysis = make_analysis(3)
    mask = np.zeros((32, 32), bool)
    mask[8:20, 10:26] = True
    stats = analysis_stats(analysis, mask)
    for layer in analysis.layers:
        aucs = stats["layers"][layer.name]["mask_auc"]
        for g in range(layer.groups):
            up = np.asarray(Image.fromarray(layer.gate[g], "F").resize((32, 32), Image.BILINEAR))
            assert aucs[g] == pytest.approx(roc_auc_score(mask.ravel(), up.ravel()), abs=1e-9)


def test_mask_edge_cases():
    analysis = make_analysis()
    with pytest.raises(ValueError, match="does not match"):
        analysis_stats(analysis, np.ones((16, 16), bool))
    empty = analysis_stats(analysis, np.zeros((32, 32), bool))  # AUC undefined: null, still valid JSON
    json.dumps(empty, allow_nan=False)
    assert all(v is None for v in empty["layers"]["layer1.0.sge"]["mask_auc"])
