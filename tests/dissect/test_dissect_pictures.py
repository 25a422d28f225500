"""What the pass keeps for the report: equal to what a second forward gives, through resume and merges."""
from __future__ import annotations

import numpy as np
import pytest
from dissect_helpers import make_image_set, tiny_loaded

from sge_viz.dissect.engine import run_local
from sge_viz.dissect.pictures import FIG_FIELDS, TILE, draw_patch
from sge_viz.dissect.report import entry_data
from sge_viz.dissect.summary import Partial
from sge_viz.io.inputs import collect

K = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pictures")
    make_image_set(tmp / "set", count=14, masks=3)
    loaded, _ = tiny_loaded(tmp)
    items = collect([tmp / "set"]).items
    return loaded, items, run_local(loaded, items, K, batch_size=4)


def _every_entry_has_pictures(partial: Partial) -> None:
    for name, layer in partial.layers.items():
        assert layer.pictures is not None and (layer.best.slots() >= 0).all(), name
        live = layer.best.slots().ravel()
        assert len(set(live.tolist())) == live.size  # one row per entry, none shared


def assert_same_pictures(got: dict, want: dict, exact: bool = False) -> None:
    assert got.keys() == want.keys()
    for key, entry in got.items():
        assert entry.keys() == want[key].keys(), key
        for field, value in entry.items():
            other = want[key][field]
            if exact or value.dtype == np.uint8:
                np.testing.assert_array_equal(value, other, err_msg=f"{key} {field}")
            else:  # float16 maps of two forwards: equal to float16's step
                np.testing.assert_allclose(value.astype(np.float32), other.astype(np.float32), rtol=2e-3,
                                           atol=1e-3, err_msg=f"{key} {field}")


def test_one_pass_pictures_equal_the_second_forwards(run):
    loaded, items, partial = run
    _every_entry_has_pictures(partial)
    kept = entry_data(partial, loaded, items)
    # The numbers alone (as a run without pictures leaves them): the report runs the top images again.
    redone = entry_data(Partial.from_json(partial.to_json()), loaded, items)
    groups = sum(layer.groups for layer in partial.layers.values())
    assert len(kept) == groups * K
    assert_same_pictures(kept, redone)
    last = list(partial.layers)[-1]
    assert all(set(v) == set(FIG_FIELDS) if k[0] == last else set(v) == {"crop", "gate"} for k, v in kept.items())
    # The patches drawn from either: the same picture (measured: at most a few levels of 255 apart).
    size = loaded.config.input_size
    worst = 0
    for (name, g, rank), entry in kept.items():
        best = partial.layers[name].best
        row, col = int(best.row[g, rank]), int(best.col[g, rank])
        a = draw_patch(entry["crop"], entry["gate"], row, col, size).astype(int)
        b = draw_patch(redone[(name, g, rank)]["crop"], redone[(name, g, rank)]["gate"], row, col, size).astype(int)
        assert a.shape == (TILE, TILE, 3)
        worst = max(worst, int(np.abs(a - b).max()))
    assert worst <= 3, worst


def test_pictures_survive_resume_and_any_merge_order(run, tmp_path):
    loaded, items, partial = run
    want = entry_data(partial, loaded, items)
    state = tmp_path / "state.npz"

    class Killed(Exception):
        pass

    seen = [0]

    def die_after_two_batches(n: int) -> None:
        seen[0] += 1
        if seen[0] == 2:
            raise Killed

    with pytest.raises(Killed):
        run_local(loaded, items, K, batch_size=4, state_path=state, save_every=1, progress=die_after_two_batches)
    resumed = run_local(loaded, items, K, batch_size=4, state_path=state, resume=True)
    _every_entry_has_pictures(resumed)
    assert_same_pictures(entry_data(resumed, loaded, items), want, exact=True)
    # Partials of other batches merged in another order, and through bytes (how Ray actors send them);
    # a forward of other batches rounds differently, so the maps agree to float16's step.
    parts = [run_local(loaded, items[i:i + 5], K, batch_size=2) for i in range(0, len(items), 5)]
    merged = Partial(K)
    for p in reversed(parts):
        merged.absorb(Partial.from_bytes(p.to_bytes()))
    tree = parts[0].merge(parts[1].merge(parts[2]))
    for other in (merged, tree):
        _every_entry_has_pictures(other)
        assert_same_pictures(entry_data(other, loaded, items), want)


def test_precedes_is_the_top_lists_total_order():
    from sge_viz.dissect.summary import precedes

    rng = np.random.default_rng(0)
    names = np.array(["a", "b", "c"])
    for _ in range(100):  # small ranges: many ties on the score, the name and the row
        score, row, col = (rng.integers(0, 3, (3, 5)) for _ in range(3))
        image = rng.choice(names, (3, 5))
        than = (rng.integers(0, 3, 3).astype(float), rng.choice(names, 3), rng.integers(0, 3, 3), rng.integers(0, 3, 3))
        got = precedes(score.astype(float), image, row, col, than)
        want = [[(-score[g, j], image[g, j], row[g, j], col[g, j]) < (-than[0][g], than[1][g], than[2][g], than[3][g])
                 for j in range(5)] for g in range(3)]
        np.testing.assert_array_equal(got, want)


def test_state_is_saved_every_n_batches_but_not_sooner_than_the_interval(run, tmp_path, monkeypatch):
    from sge_viz.dissect import engine

    loaded, items, _ = run
    saved = []
    real = engine.save_state

    def counting(path, partial, done, fp):
        saved.append(done)
        real(path, partial, done, fp)

    monkeypatch.setattr(engine, "save_state", counting)
    run_local(loaded, items, K, batch_size=4, state_path=tmp_path / "a.npz", save_every=1)
    assert saved == [4, 8, 12, 14]  # every batch
    saved.clear()
    run_local(loaded, items, K, batch_size=4, state_path=tmp_path / "b.npz", save_every=1, save_interval=3600)
    assert saved == [14]  # the interval has not passed: only the final state
