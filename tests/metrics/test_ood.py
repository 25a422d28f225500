"""The out-of-domain signals: the Mahalanobis distance and the staged score recomputed by hand, their JSON
round trips, and what the shipped demo model says of the shipped examples."""
from __future__ import annotations

import json

import numpy as np
import pytest

from sge_viz.capture.analysis import analyze
from sge_viz.domain import verdict
from sge_viz.domain.detector import OODDetector, fit
from sge_viz.io.images import open_image
from sge_viz.models.factory import create_model
from sge_viz.models.registry import DEMO_ARCH
from sge_viz.resources import examples_dir


def test_distance_is_the_nearest_class_mahalanobis_distance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 200)
    centres = rng.normal(0, 5, (3, 4))
    features = centres[labels] + rng.normal(0, 1, (600, 4)) * [1, 2, 0.5, 1]
    means, precision = fit(features, labels)
    np.testing.assert_allclose(means, [features[labels == c].mean(0) for c in range(3)])
    within = features - means[labels]
    np.testing.assert_allclose(np.linalg.inv(precision), np.cov(within.T) + 1e-6 * np.eye(4), rtol=1e-8)
    detector = OODDetector(means, precision, threshold=10.0)
    probe = rng.normal(0, 5, (5, 4))
    want = [min(float((p - m) @ precision @ (p - m)) for m in means) for p in probe]
    np.testing.assert_allclose(detector.distances(probe), want, rtol=1e-10)
    # Far from every class mean: flagged; at a class mean: distance 0.
    assert detector.distances(means[:1])[0] == pytest.approx(0.0, abs=1e-9)
    assert verdict(detector.distances(means[:1] + 100)[0], 10.0).out_of_domain is True
    again = OODDetector.from_json(detector.to_json())
    np.testing.assert_allclose(again.distances(probe), detector.distances(probe), rtol=1e-5)
    with pytest.raises(ValueError):
        OODDetector.from_json('{"means": [[1, 2]], "precision": [[1]], "threshold": 1}')
    with pytest.raises(ValueError):
        detector.distances(np.zeros((2, 3)))


def test_original_demo_model_flags_photos_not_its_scenes():
    from sge_viz.domain.detector import STAGED_NAME

    loaded = create_model(DEMO_ARCH, device="cpu")
    assert loaded.ood is not None and loaded.config.ood_threshold == loaded.ood.threshold
    assert loaded.ood.name == STAGED_NAME and loaded.ood.modules == ("layer1", "layer2", "layer3", "")
    # Measured when it was chosen (checkpoints/MODEL_CARD.md): about 5% in-domain false alarms.
    assert 0.02 <= loaded.ood.false_alarm <= 0.08 and loaded.ood.auroc > 0.95
    folder = examples_dir()
    for scene in sorted(folder.glob("scene_0?.png")):
        assert not analyze(loaded, open_image(scene)).ood.out_of_domain, scene.name
    flagged = {name: analyze(loaded, open_image(folder / name)).ood.out_of_domain
               for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")}
    # All four photos (the pooled features alone let the rocket through: the card says so).
    assert flagged == {"astronaut.jpg": True, "chelsea.jpg": True, "coffee.jpg": True, "rocket.jpg": True}


def _nearest(f, means, precision):
    return np.array([min(float((x - m) @ precision @ (x - m)) for m in means) for x in f])


def test_staged_score_is_the_sum_of_scaled_stage_distances_and_energy():
    """fit_staged's scales and energy moments, and the score, recomputed from the definitions; the JSON
    round trip, the dispatch on the stored name, and malformed parameters refused."""
    from sge_viz.domain.detector import LOGITS, STAGED_NAME, StagedDetector, detector_from_json, fit_staged

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 100)
    pooled = {"layer1": rng.normal(0, 3, (3, 4))[labels] + rng.normal(0, 1, (300, 4)),
              "layer2": rng.normal(0, 3, (3, 2))[labels] + rng.normal(0, 1, (300, 2)),
              LOGITS: rng.normal(0, 2, (300, 3))}
    det = fit_staged(pooled, labels, ["layer1", "layer2"])
    assert det.modules == ("layer1", "layer2", LOGITS)
    for term in det.terms:
        means, precision = fit(pooled[term.module], labels)
        assert term.scale == pytest.approx(np.median(_nearest(pooled[term.module], means, precision)), rel=1e-9)
    lse = np.log(np.exp(pooled[LOGITS]).sum(axis=1))
    assert det.energy_mean == pytest.approx(-lse.mean()) and det.energy_std == pytest.approx(lse.std())
    probe = {"layer1": rng.normal(0, 4, (6, 4)), "layer2": rng.normal(0, 4, (6, 2)), LOGITS: rng.normal(0, 2, (6, 3))}
    want = sum(np.log(_nearest(probe[t.module], t.means, t.precision) / t.scale) for t in det.terms)
    want = want + (-np.log(np.exp(probe[LOGITS]).sum(axis=1)) - det.energy_mean) / det.energy_std
    np.testing.assert_allclose(det.scores(probe), want, rtol=1e-9)
    # Far from every class in every stage: a high score; in-domain scores centre near 0.
    assert det.scores({k: v + 50 if k != LOGITS else v for k, v in probe.items()}).min() > det.scores(pooled).max()
    stored = det.with_threshold(1.5, 0.05, 0.99)
    again = detector_from_json(stored.to_json())
    assert isinstance(again, StagedDetector) and again.name == STAGED_NAME and again.threshold == 1.5
    np.testing.assert_allclose(again.scores(probe), det.scores(probe), rtol=1e-5)
    assert isinstance(detector_from_json(OODDetector(np.zeros((2, 3)), np.eye(3), 1.0).to_json()), OODDetector)
    broken = json.loads(stored.to_json())
    broken["terms"][0]["scale"] = 0
    for bad in (json.dumps(broken), '{"name": "stages + energy", "terms": []}', "[1, 2]", "not json"):
        with pytest.raises(ValueError):
            detector_from_json(bad)


def test_blocks_score_reads_gates_per_group_and_keeps_its_name():
    """A term over a gate module read per group ((B * G, 1) per batch, as SGE's sig gives it) scores as the
    same numbers laid out (B, G); the name survives the threshold and the JSON round trip."""
    from sge_viz.domain.detector import BLOCKS_NAME, LOGITS, StagedDetector, detector_from_json, fit_staged, per_image

    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(2), 60)
    gates = rng.uniform(0, 1, (2, 4))[labels] + rng.normal(0, 0.05, (120, 4))  # (B, G)
    wide = {"block": rng.normal(0, 1, (120, 3)) + labels[:, None], "gate": gates, LOGITS: rng.normal(0, 1, (120, 2))}
    flat = dict(wide, gate=gates.reshape(-1, 1))  # (B * G, 1): how the sig module's averaged output arrives
    det = fit_staged(flat, labels, ["block", "gate"], name=BLOCKS_NAME)
    same = fit_staged(wide, labels, ["block", "gate"], name=BLOCKS_NAME)
    np.testing.assert_allclose(det.scores(flat), same.scores(wide), rtol=1e-12)
    means, precision = fit(gates, labels)
    np.testing.assert_allclose(det.parts(flat)["gate"],
                               np.log(_nearest(gates, means, precision) / det.terms[1].scale), rtol=1e-9)
    stored = det.with_threshold(2.0, 0.04, 0.99)
    again = detector_from_json(stored.to_json())
    assert isinstance(again, StagedDetector) and again.name == stored.name == BLOCKS_NAME
    np.testing.assert_allclose(again.scores(flat), det.scores(flat), atol=1e-3)  # JSON keeps 6-7 digits
    np.testing.assert_array_equal(per_image(gates, 120), gates)
    with pytest.raises(ValueError):
        per_image(np.zeros((7, 1)), 2)


def test_default_model_flags_every_photo_not_its_scenes():
    """The default model's stored signal (chosen in checkpoints/MODEL_CARD.md, "Out-of-domain signal of the
    default model"): every asset photo flagged, the cat photo included; none of its example scenes."""
    from sge_viz.domain.detector import BLOCKS_NAME

    loaded = create_model(device="cpu")
    assert loaded.ood.name == loaded.config.ood_score == BLOCKS_NAME
    assert loaded.ood.modules == ("layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                                  "layer3.1.sge.sig", "")
    assert 0.02 <= loaded.ood.false_alarm <= 0.05 and loaded.ood.auroc >= 0.99
    folder = examples_dir()
    for scene in sorted(folder.glob("scene_wild_0?.png")):
        assert not analyze(loaded, open_image(scene)).ood.out_of_domain, scene.name
    for name in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        verdict_ = analyze(loaded, open_image(folder / name)).ood
        assert verdict_.out_of_domain and verdict_.score == BLOCKS_NAME, (name, verdict_)


def test_analysis_verdict_reads_the_stage_outputs_of_its_own_forward():
    """A staged detector attached to the demo model: analyze_views' verdict equals the score recomputed
    from stage outputs read by hooks of the test's own, and names the score."""
    import torch

    from sge_viz.capture.analysis import analyze_views
    from sge_viz.capture.preprocess import center_crop_view, normalise_batch
    from sge_viz.domain.detector import LOGITS, STAGED_NAME, fit_staged

    loaded = create_model(device="cpu")
    folder = examples_dir()
    images = [open_image(p) for p in sorted(folder.glob("scene_0?.png"))] + [open_image(folder / "coffee.jpg")]
    views = [center_crop_view(im, loaded.config.resize_size, loaded.config.input_size) for im in images]
    seen = {}
    hooks = [getattr(loaded.model, f"layer{i}").register_forward_hook(
        lambda _m, _a, out, i=i: seen.__setitem__(f"layer{i}", out.double().mean((2, 3)).numpy())) for i in (1, 2, 3)]
    with torch.inference_mode():
        seen[LOGITS] = loaded.model(normalise_batch(views, loaded.config)).double().numpy()
    for h in hooks:
        h.remove()
    labels = np.arange(len(views)) % 2
    pooled = {k: np.concatenate([v, v + np.random.default_rng(0).normal(0, 0.1, v.shape)]) for k, v in seen.items()}
    detector = fit_staged(pooled, np.concatenate([labels, labels]), ["layer1", "layer2", "layer3"]).with_threshold(0.0)
    loaded.ood = detector
    got = [a.ood for a in analyze_views(loaded, views)]
    assert all(v.score == STAGED_NAME and v.threshold == 0.0 for v in got)
    # Two forwards of the same views: equal up to float32 rounding.
    np.testing.assert_allclose([v.value for v in got], detector.scores(seen), rtol=1e-5, atol=1e-6)
    assert [v.out_of_domain for v in got] == list(detector.scores(seen) > 0.0)


def test_pooled_outputs_names_a_module_the_model_lacks():
    from sge_viz.domain.pooling import pooled_outputs
    from sge_viz.errors import SGEVizError

    loaded = create_model(device="cpu")
    with pytest.raises(SGEVizError, match="layer9"):
        with pooled_outputs(loaded.model, ["layer1", "layer9"], {}):
            pass
