"""The shipped demo model: loads through the normal doors, carries complete metadata, and still
measures what its model card says on a held-out fixture regenerated from t10k.

The fixture is the first FIXTURE scenes of the evaluation set (same generator as the model's
recipe, split and seed as `python -m training.evaluate`), so the figures are compared with
the card's 5000-scene ones within a sampling margin: top-1 within 6 points (about 3 standard
errors of a 300-scene accuracy near 87%), median gate AUC within 0.04.
"""
from __future__ import annotations

import pytest
import torch

from sge_viz.capture.recorder import GateRecorder
from sge_viz.models import create_model, find_checkpoints, load_checkpoint, read_metadata
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS
from sge_viz.resources import demo_checkpoint
from training.data import FASHION_MNIST_CLASSES
from training.evaluate import EVAL_SAMPLES, EVAL_SEED, measure, plain_twin
from training.train import PLAIN_CHECKPOINT, scenes_of

FIXTURE = 300
TOP1_MARGIN = 0.06
AUC_MARGIN = 0.04


@pytest.fixture(scope="module")
def loaded():
    return create_model(DEMO_ARCH, device="cpu")  # the original demo model, by its own name


@pytest.fixture(scope="module")
def metadata():
    return read_metadata(demo_checkpoint())


@pytest.fixture(scope="module")
def scenes(metadata):
    return scenes_of(metadata)


@pytest.fixture(scope="module")
def fixture_scores(loaded, scenes):
    return measure(loaded, count=FIXTURE, activations=False, scenes=scenes)


def test_checkpoint_file_and_loaders(loaded):
    assert demo_checkpoint().stat().st_size <= 12 * 1024 * 1024
    assert loaded.config.arch == DEMO_ARCH and loaded.config.arch_kwargs == DEMO_KWARGS
    assert loaded.num_parameters <= 5_000_000
    assert not loaded.model.training
    same = load_checkpoint(demo_checkpoint(), device="cpu")
    for (k, a), (_, b) in zip(loaded.model.state_dict().items(), same.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert any(f.path.resolve() == demo_checkpoint().resolve() for f in find_checkpoints())


def test_config_carries_preprocessing_and_names(loaded):
    cfg = loaded.config
    assert cfg.class_names == FASHION_MNIST_CLASSES and cfg.num_classes == 10
    assert cfg.input_size == cfg.resize_size == 64
    assert len(cfg.mean) == len(cfg.std) == 3 and all(0 < s < 1 for s in cfg.std)


def test_deepest_gate_map_is_at_least_8x8(loaded):
    size = loaded.config.input_size
    with torch.inference_mode(), GateRecorder(loaded.model, activations=False) as rec:
        loaded.model(torch.zeros(1, 3, size, size))
    deepest = rec.captures[rec.layer_names[-1]].gate
    assert deepest.shape[-2] >= 8 and deepest.shape[-1] >= 8
    assert len(rec.layer_names) == 2 * len(DEMO_KWARGS["layers"])


def test_metadata_is_complete(metadata, loaded):
    for key in ("recipe", "training", "metrics", "data_origin", "use_sge", "sge_viz.config"):
        assert key in metadata, key
    recipe = metadata["recipe"]
    for key in ("epochs", "samples_per_epoch", "batch_size", "lr", "weight_decay", "seed", "optimizer"):
        assert key in recipe, key
    metrics = metadata["metrics"]
    assert metrics["samples"] >= EVAL_SAMPLES and metrics["seed"] == EVAL_SEED and metrics["split"] == "t10k"
    assert 0 < metrics["top1"] <= 1 and 0 < metrics["plain_top1"] <= 1
    with GateRecorder(loaded.model) as rec:
        names = rec.layer_names
    assert list(metrics["layers"]) == names
    for m in metrics["layers"].values():
        for key in ("gate_auc_median", "gate_auc_share_above_half", "item_clutter_ratio"):
            assert key in m, key
        # Before/after SGE: the vector-length AUCs evaluate reports now, or (a checkpoint evaluated before
        # they replaced them, as the shipped one is) the signed channel-sum AUCs.
        assert {"before_length_auc_median", "after_length_auc_median"} <= set(m) or \
            {"before_auc_median", "after_auc_median"} <= set(m)
    assert recipe["seed"] != EVAL_SEED


def test_accuracy_matches_the_model_card(fixture_scores, metadata):
    card = metadata["metrics"]["top1"]
    assert abs(fixture_scores["top1"] - card) <= TOP1_MARGIN, (fixture_scores["top1"], card)
    assert fixture_scores["top1"] > 0.5  # far above the 10% of chance, whatever the card says


def test_gate_localisation_matches_the_model_card(fixture_scores, metadata):
    card = metadata["metrics"]["layers"]
    for name, m in fixture_scores["layers"].items():
        assert abs(m["gate_auc_median"] - card[name]["gate_auc_median"]) <= AUC_MARGIN, name
    # The card's best layer localises the item on the fixture too.
    best = max(card, key=lambda n: card[n]["gate_auc_median"])
    assert fixture_scores["layers"][best]["gate_auc_median"] > 0.7


def test_plain_twin_matches_the_model_card(metadata, scenes):
    plain = plain_twin(PLAIN_CHECKPOINT, torch.device("cpu"))
    with GateRecorder(plain.model) as rec:
        assert rec.layer_names == []  # really without SGE
    top1 = measure(plain, count=FIXTURE, activations=False, scenes=scenes)["top1"]
    assert abs(top1 - metadata["metrics"]["plain_top1"]) <= TOP1_MARGIN


def test_default_command_reproduces_the_shipped_recipe(metadata):
    from dataclasses import asdict

    from training.train import Recipe, parse_args

    shipped = {k: v for k, v in metadata["recipe"].items() if k in asdict(Recipe())}
    assert shipped == asdict(Recipe())  # `python -m training.train` with no flags trains this recipe
    assert scenes_of(metadata) == parse_args([]).scenes


def test_recipe_spares_sge_parameters_from_weight_decay(loaded):
    from training.train import Recipe, lr_at, param_groups

    r = Recipe()
    decay, no_decay, sge = param_groups(loaded.model, 5e-4, r.sge_lr_mult)
    sge_params = {id(p) for n, p in loaded.model.named_parameters() if ".sge." in n}
    assert len(sge_params) == 2 * sum(DEMO_KWARGS["layers"])  # weight and bias of every SGE layer
    assert sge_params == {id(p) for p in sge["params"]}
    assert sge["weight_decay"] == 0.0 and sge["lr_mult"] == r.sge_lr_mult
    assert not sge_params & {id(p) for p in decay["params"] + no_decay["params"]}
    assert all(p.ndim == 4 or p.ndim == 2 for p in decay["params"])
    assert decay["lr_mult"] == no_decay["lr_mult"] == 1.0 and no_decay["weight_decay"] == 0.0
    assert lr_at(0, r) == pytest.approx(r.lr / r.warmup_steps)
    assert lr_at(r.warmup_steps, r) == pytest.approx(r.lr)
    assert lr_at(r.total_steps, r) == pytest.approx(0.0, abs=1e-12)
