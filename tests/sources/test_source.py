"""``open_model``: the one path from a ``ModelSource`` to a ``LoadedModel``, walked straight (each room entered
once, the network built once) and loaded exactly."""
from __future__ import annotations

import sys
from collections import Counter

import torch

from sge_viz.models import create_model, save_safetensors
from sge_viz.sources import ModelSource, open_model

# Rooms a model request walks through; leaves (config's properties, the network's own constructors and
# forward, resources, device) are called from several of them and are not steps of the walk.
STEPS = ("sge_viz.sources.source", "sge_viz.models.factory", "sge_viz.models.checkpoint", "sge_viz.models.registry",
         "sge_viz.domain.detector", "sge_viz.models.loaded")


def entries(source: ModelSource) -> tuple[list[str], Counter]:
    """The walk's steps in the order first entered, and how often each was entered from another module."""
    entered: Counter = Counter()
    order: list[str] = []

    def profile(frame, event, _arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        if module in STEPS and module != caller:
            entered[module] += 1
            if module not in order:
                order.append(module)

    sys.setprofile(profile)
    try:
        open_model(source, device="cpu")
    finally:
        sys.setprofile(None)
    return order, entered


def test_default_request_enters_each_room_once():
    order, entered = entries(ModelSource())
    assert order == list(STEPS)  # source -> factory -> checkpoint -> registry (built once) -> domain -> loaded
    assert set(entered.values()) == {1}, entered


def test_checkpoint_request_builds_the_network_once_and_loads_it_exactly(tmp_path):
    """A registered architecture from a file: built once (on the meta device, then filled by the strict
    load: no random init), and every weight equal to the file's."""
    original = create_model("sge_resnet18", random_weights=True, device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # values no init gives (BatchNorm's too), so a weight not read from the file shows
        for p in original.model.state_dict().values():
            if p.is_floating_point():
                p.add_(0.01 * torch.rand(p.shape, generator=gen))
    path = tmp_path / "r18.safetensors"
    save_safetensors(original.model, original.config, path)
    order, entered = entries(ModelSource(checkpoint=str(path)))
    assert entered["sge_viz.models.registry"] == 1 and set(entered.values()) == {1}, entered
    loaded = open_model(ModelSource(checkpoint=str(path)), device="cpu")
    want = original.model.state_dict()
    got = loaded.model.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
