"""The train command reaches the randomised scenes: a short run trains on them, and the metadata says so."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from training import train
from training.data import ClutterConfig, SceneConfig, WildFashionMNIST


def test_scenes_option_and_training_sets():
    assert train.parse_args([]).scenes == "cluttered"  # the shipped model's recipe is the default
    assert train.parse_args(["--scenes", "wild"]).scenes == "wild"
    wild = train.training_scenes("wild", 0, 10)
    assert isinstance(wild, WildFashionMNIST) and wild.split == "train" and wild.config == SceneConfig()
    with pytest.raises(ValueError, match="cluttered, wild"):
        train.training_scenes("other", 0, 10)


def test_short_wild_run_learns_from_resized_scenes(tmp_path):
    recipe = train.Recipe(epochs=1, samples_per_epoch=32, batch_size=8, warmup_steps=2)
    config = train.demo_config((0.4, 0.4, 0.4), (0.25, 0.25, 0.25), recipe.input_size)
    result = train.train_one(recipe, True, config, torch.device("cpu"), tmp_path / "sge.pt", workers=0, root=None,
                             resume=False, scenes="wild")
    state = torch.load(tmp_path / "sge.pt", weights_only=True)
    assert state["scenes"] == "wild" and state["epoch"] == 1
    assert 0 < state["loss"] < 10  # batches were trained and scored (no batch leaves it at 0)
    # The weights moved away from a fresh model's.
    fresh, _ = train.build_model(train.DEMO_ARCH, config)
    moved = [not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), result.model.state_dict().values())
             if a.is_floating_point()]
    assert np.mean(moved) > 0.5
    meta = train.recipe_metadata(recipe, result, True, torch.device("cpu"), "wild")
    assert meta["recipe"]["scenes"] == "wild" and meta["recipe"]["scene_config"] == asdict(SceneConfig())
    assert "clutter" not in meta["recipe"]
    assert train.recipe_metadata(recipe, result, True, torch.device("cpu"))["recipe"]["clutter"] == asdict(
        ClutterConfig())
    # A state of the other recipe is not resumed: it trains afresh and overwrites it (a resumed finished run
    # would write nothing).
    train.train_one(recipe, True, config, torch.device("cpu"), tmp_path / "sge.pt", workers=0, root=None,
                            resume=True, scenes="cluttered")
    assert torch.load(tmp_path / "sge.pt", weights_only=True)["scenes"] == "cluttered"


def test_lockstep_training_gives_each_model_what_training_it_alone_gives(tmp_path):
    """The SGE model and its plain twin trained together see the same batches and start from the same
    initialisation as when each is trained alone: the weights come out identical."""
    recipe = train.Recipe(epochs=1, samples_per_epoch=16, batch_size=8, warmup_steps=1)
    config = train.demo_config((0.4, 0.4, 0.4), (0.25, 0.25, 0.25), recipe.input_size)
    torch.set_num_threads(1)  # deterministic CPU kernels for the comparison
    together = train.train_lockstep(recipe, [True, False], config, torch.device("cpu"),
                                    [tmp_path / "a.pt", tmp_path / "b.pt"], workers=0, root=None, resume=False,
                                    scenes="wild")
    alone = [train.train_one(recipe, use_sge, config, torch.device("cpu"), tmp_path / f"{use_sge}.pt", workers=0,
                             root=None, resume=False, scenes="wild") for use_sge in (True, False)]
    for a, b in zip(together, alone):
        sa, sb = a.model.state_dict(), b.model.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(".sge." in k for k in together[0].model.state_dict())
    assert not any(".sge." in k for k in together[1].model.state_dict())
    # Both states were written and a rerun resumes them (nothing left to train: weights unchanged).
    again = train.train_lockstep(recipe, [True, False], config, torch.device("cpu"),
                                 [tmp_path / "a.pt", tmp_path / "b.pt"], workers=0, root=None, scenes="wild")
    assert all(torch.equal(x, y) for x, y in zip(again[0].model.state_dict().values(),
                                                 together[0].model.state_dict().values()))


def test_wild_config_says_what_the_model_knows():
    config = train.demo_config((0.4,) * 3, (0.25,) * 3, 64, scenes="wild", scene_count=84480)
    assert "plain light backgrounds" in config.description and "84k generated training scenes" in config.training_data
    assert train.demo_config((0.4,) * 3, (0.25,) * 3, 64).description == ""  # the registry's default fills it


def test_continued_training_starts_from_the_weights_and_draws_smaller_items(tmp_path):
    """--init: the first step starts from the checkpoint's weights (zero learning rate leaves them as they
    are); --item-frac: the training scenes draw their items from that range; a state started otherwise is
    not resumed; the metadata names the start and the item range."""
    from sge_viz.models.checkpoint import save_safetensors

    recipe = train.Recipe(epochs=1, samples_per_epoch=16, batch_size=8, warmup_steps=1, lr=0.0)
    config = train.demo_config((0.4,) * 3, (0.25,) * 3, recipe.input_size, scenes="wild",
                               item_frac=(0.2, 0.85))
    assert "the item 20%-85% of it" in config.training_data
    torch.manual_seed(1)
    start, _ = train.build_model(train.DEMO_ARCH, config)
    for p in start.parameters():
        p.data.normal_(0, 0.1)
    history = {"recipe": {"epochs": 3, "scenes": "wild"}, "training": {"seconds": 1.5}}
    init = save_safetensors(start, config, tmp_path / "start.safetensors", history)
    small = SceneConfig(item_frac=(0.2, 0.85))
    assert train.training_scenes("wild", 0, 4, scene_config=small).config.item_frac == (0.2, 0.85)
    result = train.train_lockstep(recipe, [True], config, torch.device("cpu"), [tmp_path / "s.pt"], workers=0,
                                  root=None, resume=False, scenes="wild", scene_config=small, inits=[init])[0]
    want = start.state_dict()
    got = result.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if "running" not in k and "num_batches" not in k)
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["start"] == {"scene_config": asdict(small), "init": str(init)}
    # Rerun from scratch with the same state file: the start differs, so it trains afresh.
    fresh = train.train_lockstep(recipe, [True], config, torch.device("cpu"), [tmp_path / "s.pt"], workers=0,
                                 root=None, scenes="wild")
    assert not torch.equal(fresh[0].model.state_dict()["fc.weight"], want["fc.weight"])
    meta = train.recipe_metadata(recipe, result, True, torch.device("cpu"), "wild", small, init)
    assert tuple(meta["recipe"]["scene_config"]["item_frac"]) == (0.2, 0.85)
    assert meta["recipe"]["init"] == "start.safetensors"
    # The start's own history travels with the new weights (it may be shipped under the start's name).
    assert meta["recipe"]["earlier"] == {"file": "start.safetensors", **history}
    with pytest.raises(SystemExit):
        train.parse_args(["--item-frac", "0.2"])
