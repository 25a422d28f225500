"""The default demo model (randomised scenes): the default of every door, found by name and first in the app,
carries its own domain,
metrics and out-of-domain signal, and still measures what its metadata says on a held-out fixture.

The fixture is the first FIXTURE scenes of its evaluation set (the randomised recipe, test split, seed as
`python -m training.evaluate`), compared with the 5000-scene figure within 6 points (about 2.6
standard errors of a 300-scene accuracy near 80%).
"""
from __future__ import annotations

import pytest

from sge_viz.domain.detector import BLOCKS_NAME
from sge_viz.models import create_model, read_metadata
from sge_viz.models.factory import SCENES_LABEL, SCENES_MODEL
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS
from sge_viz.resources import scenes_checkpoint
from training.evaluate import EVAL_SAMPLES, EVAL_SEED, measure
from training.train import scenes_of

FIXTURE = 300
TOP1_MARGIN = 0.06


@pytest.fixture(scope="module")
def loaded():
    return create_model(SCENES_MODEL, device="cpu")


@pytest.fixture(scope="module")
def metadata():
    return read_metadata(scenes_checkpoint())


def scenes_seen(recipe: dict) -> int:
    """Every scene the weights were trained on: this run's, plus those of the runs it continued (``earlier``)."""
    seen = recipe["epochs"] * recipe["samples_per_epoch"]
    earlier = recipe.get("earlier", {}).get("recipe")
    return seen + (scenes_seen(earlier) if earlier else 0)


def test_loads_by_name_with_its_own_domain_and_signal(loaded, metadata):
    assert scenes_checkpoint().stat().st_size <= 12 * 1024 * 1024
    assert loaded.name == SCENES_LABEL
    assert loaded.config.arch == DEMO_ARCH and loaded.config.arch_kwargs == DEMO_KWARGS
    # Its own domain card, not the default model's (which describes Cluttered Fashion-MNIST).
    assert "randomised Fashion-MNIST scenes" in loaded.config.training_data
    assert "Cluttered" not in loaded.config.training_data
    assert scenes_of(metadata) == "wild" and scenes_seen(metadata["recipe"]) > 400_000
    assert loaded.ood is not None and loaded.ood.name == BLOCKS_NAME
    assert loaded.config.ood_score == BLOCKS_NAME and 0.02 <= loaded.ood.false_alarm <= 0.05 and loaded.ood.auroc >= 0.99
    metrics = metadata["metrics"]
    assert metrics["samples"] >= EVAL_SAMPLES and metrics["seed"] == EVAL_SEED and metrics["scenes"] == "wild"


def test_accuracy_matches_its_metadata(loaded, metadata):
    top1 = measure(loaded, count=FIXTURE, activations=False, scenes="wild")["top1"]
    assert abs(top1 - metadata["metrics"]["top1"]) <= TOP1_MARGIN, (top1, metadata["metrics"]["top1"])


def test_the_default_everywhere_and_first_in_the_app():
    from sge_viz.app.catalogue import DEMO_LABEL, ModelService

    service = ModelService(device="cpu")
    assert service.choices[:2] == [SCENES_LABEL, DEMO_LABEL] and service.default == SCENES_LABEL
    assert service.resolve(SCENES_MODEL) == SCENES_LABEL and service.resolve("demo") == SCENES_LABEL
    assert service.resolve(DEMO_ARCH) == DEMO_LABEL  # the original stays on offer under its own name
    assert "own generator" in service.domain(DEMO_LABEL)["description"]
    for name in (None, "", "demo", SCENES_MODEL):  # create_model's default is the same file
        assert create_model(name, device="cpu").source == str(scenes_checkpoint())
    assert create_model(DEMO_ARCH, device="cpu").name == DEMO_LABEL
    assert "randomised" in service.domain(SCENES_LABEL)["training_data"]
