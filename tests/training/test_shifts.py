"""The shift suite: fixed, deterministic, disjoint from training; and the evaluate code that scores it.

Reads the Fashion-MNIST IDX files (Debian package dataset-fashion-mnist, which CI installs).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import save_tiny

from sge_viz.capture.analysis import analyze_views
from sge_viz.metrics.localisation import gate_mask_auc
from sge_viz.models.factory import load_checkpoint
from training import evaluate
from training.data import WildFashionMNIST, load_split, view
from training.photos import TRAIN_PHOTOS, load_backgrounds
from training.shifts import SHIFT_SAMPLES, SHIFTS, shift_by_name
from training.train import training_scenes

# The suite is part of the model card's contract: these names, seeds and sizes are fixed.
EXPECTED = {"held_out": 20261126, "heavy_clutter": 20261127, "small_items": 20261128, "large_canvas": 20261129,
            "shop_style": 20261130, "photo_backgrounds": 20261131, "jpeg_q30": 20261132, "original": 20250905}


def fingerprint(dataset, indices) -> str:
    """A digest of the labels, item sources, canvases and item masks of some scenes (not the JPEG bytes)."""
    h = hashlib.sha256()
    for i in indices:
        sample = dataset[i]
        h.update(np.int64([sample.label, sample.spec.item.source, sample.image.shape[0]]).tobytes())
        h.update(np.packbits(sample.item_mask).tobytes())
    return h.hexdigest()


def test_suite_is_named_fixed_and_large_enough():
    assert {s.name: s.seed for s in SHIFTS} == EXPECTED
    assert all(s.count >= 1000 for s in SHIFTS) and SHIFT_SAMPLES >= 1000
    assert shift_by_name("jpeg_q30").config.jpeg_prob == 1.0
    with pytest.raises(ValueError, match="held_out"):
        shift_by_name("nope")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_shift_is_deterministic(name):
    shift = shift_by_name(name)
    indices = [0, 1, 2, 500, shift.count - 1]
    a, b = shift.dataset(), shift.dataset()
    late = b[indices[-1]]  # out of order, on a fresh object
    assert fingerprint(a, indices) == fingerprint(b, indices)
    np.testing.assert_array_equal(late.image, a[indices[-1]].image)
    for i in indices[:3]:
        np.testing.assert_array_equal(a[i].image, b[i].image)
    # ... and a different seed is a different set.
    other = type(a)("test", seed=shift.seed + 100, length=10, config=shift.config)
    assert fingerprint(a, range(3)) != fingerprint(other, range(3))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_shift_is_disjoint_from_training(name):
    shift = shift_by_name(name)
    ds = shift.dataset()
    test_images, _ = load_split("test")
    train_images, _ = load_split("train")
    assert ds.split == "test" and np.array_equal(ds.images, test_images)  # t10k items and clutter only
    sources = {ds.spec(i).item.source for i in range(200)}
    assert max(sources) < len(test_images)
    if isinstance(ds, WildFashionMNIST):
        # Photo backgrounds (when the shift has any) come from the test photos only.
        assert ds.photos == (load_backgrounds("test") if ds.config.background_weights[3] > 0 else ())
        train_crops = {p.tobytes() for p in load_backgrounds("train")}
        assert not any(p.tobytes() in train_crops for p in ds.photos)
        # The suite's items are not pixel copies of training items either (Fashion-MNIST's splits are disjoint).
        train_digests = {hashlib.sha1(im.tobytes()).digest() for im in train_images}
        assert not any(hashlib.sha1(test_images[s].tobytes()).digest() in train_digests for s in sources)
    # The training sets of both recipes draw from the train split and the train photos only.
    for scenes in ("cluttered", "wild"):
        train = training_scenes(scenes, 0, 100)
        assert train.split == "train" and np.array_equal(train.images, train_images)
        if scenes == "wild":
            assert train.photos == load_backgrounds("train") and len(train.photos) == 4 * len(TRAIN_PHOTOS)


def test_shifts_change_what_they_say():
    def specs(name, n=150):
        ds = shift_by_name(name).dataset()
        return [ds.spec(i) for i in range(n)]

    base = specs("held_out")
    heavy = specs("heavy_clutter")
    assert min(len(s.clutter) for s in heavy) >= 8 and min(len(s.clutter) for s in base) == 0
    assert min(f.opacity for s in heavy for f in s.clutter) >= 0.7 > min(f.opacity for s in base for f in s.clutter)
    assert max(s.item.size / s.canvas for s in specs("small_items")) <= 0.36
    assert min(s.canvas for s in specs("large_canvas")) >= 128
    shop = specs("shop_style")
    assert all(s.background == "plain" and not s.clutter and s.item.dark and s.jpeg == 0 for s in shop)
    assert all(s.background == "photo" for s in specs("photo_backgrounds"))
    assert all(s.jpeg == 30 for s in specs("jpeg_q30"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_checkpoint(save_tiny(tmp_path_factory.mktemp("shift") / "tiny.safetensors"), device="cpu")


def test_vector_length_auc_is_what_evaluate_reports(tiny):
    """measure_dataset's before/after numbers are the AUCs of ||x_g(p)||_2, recomputed here from the capture."""
    ds = shift_by_name("large_canvas").dataset()
    n = 6
    result, correct = evaluate.measure_dataset(tiny, ds, n, batch_size=3)
    views = [view(ds[i].image, 64) for i in range(n)]
    analyses = analyze_views(tiny, views)
    assert correct.tolist() == [a.predictions[0].index == ds[i].label for i, a in enumerate(analyses)]
    for li, name in enumerate(analyses[0].layer_names):
        before, after, gate = [], [], []
        for i, a in enumerate(analyses):
            layer = a.layers[li]
            mask = evaluate.mask_view(ds[i].item_mask, 64)
            # The lengths are the channel-wise vector norms, not the signed sums.
            assert (layer.before_length >= 0).all() and not np.allclose(layer.before_length, np.abs(layer.before))
            before.append(gate_mask_auc(layer.before_length, mask))
            after.append(gate_mask_auc(layer.after_length, mask))
            gate.append(gate_mask_auc(layer.gate, mask))
        m = result["layers"][name]
        assert m["before_length_auc_median"] == pytest.approx(float(np.median(np.mean(before, 0))), abs=1e-12)
        assert m["after_length_auc_median"] == pytest.approx(float(np.median(np.mean(after, 0))), abs=1e-12)
        assert m["gate_auc_median"] == pytest.approx(float(np.median(np.mean(gate, 0))), abs=1e-12)


def test_vector_lengths_are_channel_norms(tiny):
    """The recorder's lengths are ||x_g(p)||_2 of SGE's input and output, checked with a plain hook."""
    sge = [m for n, m in tiny.model.named_modules() if n.endswith("sge")][0]
    seen = {}
    handle = sge.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0].detach(), y=out.detach()))
    try:
        (a,) = analyze_views(tiny, [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)])
    finally:
        handle.remove()
    g = a.layers[0].groups
    x, y = seen["x"][0], seen["y"][0]
    norm = lambda t: t.reshape(g, -1, *t.shape[-2:]).norm(dim=1).numpy()  # noqa: E731
    np.testing.assert_allclose(a.layers[0].before_length, norm(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.layers[0].after_length, norm(y), rtol=1e-4, atol=1e-5)


def test_mask_view_keeps_the_item_area():
    ds = shift_by_name("large_canvas").dataset()
    for i in range(5):
        mask = ds[i].item_mask
        small = evaluate.mask_view(mask, 64)
        assert small.shape == (64, 64)
        assert abs(small.mean() - mask.mean()) < 0.02
    same = np.zeros((64, 64), bool)
    assert evaluate.mask_view(same, 64) is same


def test_shift_suite_tables_and_card(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "SHIFTS", tuple(s for s in SHIFTS if s.name in ("held_out", "shop_style")))
    results = evaluate.measure_shifts(tiny, tiny, evaluate.SHIFTS, count=8)
    for r in results:
        assert r["samples"] == 8 and r["diff"] == 0.0 and r["diff_se"] == 0.0  # a model against itself
        assert r["best_gate_auc_median"] == max(m["gate_auc_median"] for m in r["layers"].values())
    table = evaluate.shift_tables(results, "tiny")
    assert "| held_out |" in table and "vector length" in table.lower() and "no, " in table
    card = tmp_path / "card.md"
    card.write_text(f"# card\n\n## Shift suite\n\n{evaluate.SHIFT_START}\nold\n{evaluate.SHIFT_END}\n\n## After\n")
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(results))
    assert evaluate.main(["--shifts", "--from-json", str(saved), "--card", str(card)]) == 0
    text = card.read_text()
    assert "old" not in text and table.split("\n", 1)[1] in text and text.endswith("## After\n")
    # A partial suite never reaches the card.
    assert evaluate.main(["--shifts", "--only", "held_out", "--card", str(card)]) == 2
    assert evaluate.main(["--shifts", "--shift-samples", "10", "--card", str(card)]) == 2
    assert card.read_text() == text


def test_shift_card_needs_the_checkpoint_untouched(tiny, tmp_path):
    """--shifts writes only the card: the checkpoint file stays byte for byte the same."""
    path = tmp_path / "m.safetensors"
    save_tiny(path)
    before = path.read_bytes()
    card = tmp_path / "card.md"
    assert evaluate.main(["--shifts", "--only", "shop_style", "--shift-samples", "4", "--no-write",
                          "--checkpoint", str(path), "--plain-checkpoint", str(tmp_path / "none"),
                          "--card", str(card), "--workers", "0"]) == 0
    assert path.read_bytes() == before and not card.exists()
    torch.manual_seed(0)


def test_seed_table_is_the_mean_paired_difference_and_its_standard_error(tmp_path, capsys):
    rng = np.random.default_rng(3)
    runs = [[{"name": name, "sge_top1": float(rng.uniform(0.5, 1)), "plain_top1": float(rng.uniform(0.5, 1)),
              "best_gate_auc_median": float(rng.uniform(0.5, 1))} for name in ("held_out", "shop_style")]
            for _ in range(3)]
    table = evaluate.seed_table(runs, ["s0", "s1", "s2"])
    for k, name in enumerate(("held_out", "shop_style")):
        diff = np.array([100 * (run[k]["sge_top1"] - run[k]["plain_top1"]) for run in runs])
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"{diff.mean():+.1f} +- {diff.std(ddof=1) / np.sqrt(3):.1f}" in row
        assert ("| yes |" in row) == (diff.mean() >= 0)
    with pytest.raises(evaluate.SGEVizError, match="same shifts"):
        evaluate.seed_table([runs[0], runs[1][:1]], ["a", "b"])
    # Through the command: --seed-runs appends the table to the rendered suite.
    paths = []
    for i, run in enumerate(runs):
        layer = {"gate_auc_median": 0.6, "before_length_auc_median": 0.5, "after_length_auc_median": 0.5}
        full = [dict(r, what="w", seed=1, samples=4, layers={"l": layer}, best_layer="l", diff=0.0, diff_se=0.0)
                for r in run]
        paths.append(tmp_path / f"seed{i}.json")
        paths[-1].write_text(json.dumps(full))
    assert evaluate.main(["--shifts", "--only", "held_out,shop_style", "--no-write", "--from-json", str(paths[0]),
                          "--seed-runs", *map(str, paths)]) == 0
    assert "Over 3 training seeds (seed0, seed1, seed2)" in capsys.readouterr().out


def test_held_out_scenes_follow_the_checkpoint_recipe():
    from training.data import ClutteredFashionMNIST, SceneConfig
    from training.train import held_out_scenes, scenes_of

    wild = held_out_scenes("wild", 5, 10)
    assert isinstance(wild, WildFashionMNIST) and wild.split == "test" and wild.config == SceneConfig()
    assert isinstance(held_out_scenes("cluttered", 5, 10), ClutteredFashionMNIST)
    assert scenes_of({"recipe": {"scenes": "wild"}}) == "wild"
    assert scenes_of({}) == scenes_of({"recipe": "odd"}) == "cluttered"  # files that predate the field
    with pytest.raises(ValueError, match="cluttered, wild"):
        held_out_scenes("other", 0, 1)
