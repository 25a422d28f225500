"""The image-set summary: merges in any grouping, the contract's definitions recomputed independently,
zip == folder."""
from __future__ import annotations

import random
import zipfile

import numpy as np
import pytest
import torch
from dissect_helpers import make_image_set, summaries_equal, tiny_loaded
from PIL import Image

from sge_viz.capture.analysis import analyze_views, run_batch
from sge_viz.capture.preprocess import center_crop_view, normalise
from sge_viz.dissect.engine import run_local
from sge_viz.dissect.reduce import dissect_batch
from sge_viz.dissect.summary import LENGTH_EDGES, SQUARED_EDGES, Partial, merge_all, summary_dict
from sge_viz.io.feed import load_item
from sge_viz.io.images import open_image
from sge_viz.io.inputs import collect
from sge_viz.metrics.gates import analysis_stats

K = 3
BATCH = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dissect")
    make_image_set(tmp / "set")
    loaded, _ = tiny_loaded(tmp)
    return tmp, loaded, collect([tmp / "set"]).items


def _batch_partials(loaded, items):
    cfg = loaded.config
    partials = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        fed = [load_item(i, cfg.resize_size, cfg.input_size) for i in chunk]
        assert all(f.error is None and f.note is None for f in fed)
        partials.append(dissect_batch(loaded, [f.view for f in fed], [i.name for i in chunk],
                                      [f.mask for f in fed], K))
    return partials


def test_merge_in_any_grouping_equals_one_pass(setup):
    _, loaded, items = setup
    parts = _batch_partials(loaded, items)
    one_pass = run_local(loaded, items, K, batch_size=BATCH)
    want = summary_dict(one_pass, {})
    left = merge_all(parts, K)
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right = p.merge(right)
    tree = (parts[0].merge(parts[1])).merge(parts[2].merge(parts[3].merge(parts[4])))
    shuffled = list(parts)
    random.Random(0).shuffle(shuffled)
    through_json = merge_all([Partial.from_json(p.to_json()) for p in shuffled], K)
    for got in (left, right, tree, merge_all(shuffled, K), through_json, Partial(K).merge(left)):
        summaries_equal(summary_dict(got, {}), want)
    assert one_pass.images == len(items) == 10
    # Merging is not adding the same images twice by accident: a partial merged with itself doubles counts.
    doubled = left.merge(left)
    layer = next(iter(doubled.layers.values()))
    assert layer.images == 2 * len(items)
    assert (layer.hist_before == 2 * next(iter(left.layers.values())).hist_before).all()


def test_summary_matches_per_image_analyze_outputs(setup):
    """Every number of summary.json recomputed from analyze()'s per-image arrays, stats.json and raw
    activations caught by hooks of our own (np.var over each group's C/G x H x W values)."""
    _, loaded, items = setup
    got = summary_dict(run_local(loaded, items, K, batch_size=BATCH), {})
    cfg = loaded.config

    raw: dict[str, list] = {}
    sge = {n: m for n, m in loaded.model.named_modules() if n.endswith("sge")}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: raw.setdefault(n, []).append(
        (i[0].detach().numpy().astype(np.float64), o.detach().numpy().astype(np.float64)))) for n, m in sge.items()]
    analyses, masks, names, batches = [], [], [], []
    try:
        for start in range(0, len(items), BATCH):  # the same batches as the run, so the same float32 numbers
            chunk = items[start:start + BATCH]
            views = []
            batches.append(views)
            for item in chunk:
                image = open_image(item.path)
                views.append(center_crop_view(image, cfg.resize_size, cfg.input_size))
                if item.mask:
                    m = Image.open(item.mask).convert("L")
                    masks.append(center_crop_view(m, cfg.resize_size, cfg.input_size) >= 128)
                else:
                    masks.append(None)
                names.append(item.name)
            analyses += analyze_views(loaded, views)
    finally:
        for h in hooks:
            h.remove()
    # The squared lengths the histograms bin (float32 sums of squares over each group's channels), as the
    # analyze path captures them for the same batches.
    squared: dict[str, list] = {}
    for views in batches:
        _, rec = run_batch(loaded, torch.stack([normalise(v, cfg) for v in views]))
        for name, cap in rec.captures.items():
            squared.setdefault(name, []).append((cap.before_sq.numpy(), cap.after_sq.numpy()))
    assert got["images"] == len(analyses) == 10
    assert sum(m is not None for m in masks) == 4
    for name, layer in got["layers"].items():
        gates = np.stack([a.layer(name).gate for a in analyses]).astype(np.float64)  # (N, G, H, W)
        before_len = np.stack([a.layer(name).before_length for a in analyses]).astype(np.float64)
        after_len = np.stack([a.layer(name).after_length for a in analyses])
        x_in = np.concatenate([b[0] for b in raw[name]])  # (N, C, H, W)
        x_out = np.concatenate([b[1] for b in raw[name]])
        n, g = gates.shape[:2]
        var_in = x_in.reshape(n, g, -1).var(axis=2)  # ddof 0 over C/G x H x W
        var_out = x_out.reshape(n, g, -1).var(axis=2)
        assert layer["groups"] == g
        edges = np.asarray(layer["length_histogram"]["edges"])
        np.testing.assert_array_equal(edges, LENGTH_EDGES)
        for i, (key, x, length) in enumerate((("before", x_in, before_len), ("after", x_out, after_len))):
            sq = np.concatenate([b[i] for b in squared[name]])  # (N, G, H, W) float32
            np.testing.assert_array_equal(np.sqrt(sq), length)  # analyze()'s lengths are their square roots
            np.testing.assert_allclose(sq, np.square(x).reshape(sq.shape[:2] + (-1,) + sq.shape[2:]).sum(axis=2),
                                       rtol=1e-5, atol=1e-6)  # sums of squares of the raw activations
            sq = sq.astype(np.float64)
            counts = layer["length_histogram"][key]
            np.testing.assert_array_equal(counts, np.histogram(np.minimum(sq, SQUARED_EDGES[-1]),
                                                               SQUARED_EDGES.astype(np.float64))[0])
            np.testing.assert_array_equal(counts, np.histogram(np.minimum(np.sqrt(sq), edges[-1]), edges)[0])
        aucs = [analysis_stats(a, m)["layers"][name]["mask_auc"] for a, m in zip(analyses, masks) if m is not None]
        for entry in layer["per_group"]:
            k = entry["group"]
            np.testing.assert_allclose(entry["gate_mean"], gates[:, k].mean(), rtol=1e-6)  # float32 spatial sums
            np.testing.assert_allclose(entry["gate_std"], gates[:, k].std(), rtol=1e-5)
            for key, v in (("variance_before", var_in[:, k]), ("variance_after", var_out[:, k])):
                np.testing.assert_allclose(entry[key]["mean"], v.mean(), rtol=1e-4)
                np.testing.assert_allclose(entry[key]["std"], v.std(), rtol=1e-3, atol=1e-7)
            flat = after_len[:, k].reshape(n, -1)
            scores = flat.max(axis=1)
            order = sorted(range(n), key=lambda i: (-float(scores[i]), names[i]))[:K]
            assert [t["image"] for t in entry["top"]] == [names[i] for i in order]
            for t, i in zip(entry["top"], order):
                assert t["score"] == float(scores[i])  # both the float32 sqrt of the same maximum
                assert (t["row"], t["col"]) == divmod(int(flat[i].argmax()), gates.shape[3])
            per_image = [a[k] for a in aucs if a[k] is not None]
            np.testing.assert_allclose(entry["mask_auc"], np.mean(per_image), rtol=1e-12)
    # The after-SGE variance really differs from the before one (the gate scales the values).
    first = next(iter(got["layers"].values()))["per_group"][0]
    assert first["variance_before"]["mean"] != pytest.approx(first["variance_after"]["mean"], rel=1e-3)


def test_zip_and_folder_give_the_same_summary(setup):
    tmp, loaded, items = setup
    archive = tmp / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp / "set").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(tmp / "set").as_posix())
    from_zip = collect([archive]).items
    assert [i.name for i in from_zip] == [i.name for i in items]
    assert sum(i.mask is not None for i in from_zip) == 4
    a = summary_dict(run_local(loaded, from_zip, K, batch_size=BATCH), {})
    b = summary_dict(run_local(loaded, items, K, batch_size=BATCH), {})
    assert a == b  # bit-identical: same crops, same batches
    assert any(g["mask_auc"] is not None for g in next(iter(a["layers"].values()))["per_group"])


def test_reduction_stays_on_the_device_of_the_captures(setup):
    """The per-batch reduction works on what the recorder left on the model's device (here the CPU) and
    the recorder's default still moves float32 copies to the CPU."""
    from sge_viz.capture.recorder import GateRecorder

    _, loaded, _ = setup
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode(), GateRecorder(loaded.model, keep_on_device=True) as rec:
        loaded.model(x)
    cap = next(iter(rec.captures.values()))
    assert cap.after is not None and cap.channels == cap.before.shape[1] * (cap.channels // cap.before.shape[1])
    assert cap.channels % cap.gate.shape[1] == 0


def test_length_histogram_edges_are_the_documented_ones():
    """E_i: 0, then 10^(j/10 - 6), j = 0..140, rounded to 8 significant bits, float32 with the low 16 bits zero; the
    reported edges are their float64 square roots."""
    x = 10.0 ** (np.arange(141) / 10 - 6)
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2^exponent, mantissa in [0.5, 1)
    np.testing.assert_array_equal(SQUARED_EDGES, np.concatenate([[0.0], np.ldexp(np.round(mantissa * 256),
                                                                                 exponent - 8)]))
    assert SQUARED_EDGES.dtype == np.float32 and (SQUARED_EDGES.view(np.uint32) & 0xFFFF == 0).all()
    assert (np.diff(SQUARED_EDGES) > 0).all()
    np.testing.assert_array_equal(LENGTH_EDGES, np.sqrt(SQUARED_EDGES.astype(np.float64)))
    np.testing.assert_allclose(LENGTH_EDGES[1:], np.sqrt(x), rtol=2e-3)  # ~1e-3 .. ~1e4, 20 bins per decade


def test_length_histogram_bins_equal_numpy_at_and_around_every_edge():
    """The histogram counts float32 squared lengths as np.histogram does on the squared edges, and so as
    np.histogram of the lengths (float64 square roots) on the reported edges."""
    from sge_viz.dissect.reduce import histograms

    e = SQUARED_EDGES
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.lognormal(0, 6, 600_000).astype(np.float32),  # 1e-9 .. 1e9, several chunks
                        e, np.nextafter(e, np.float32(0)), np.nextafter(e, np.float32(np.inf)),
                        np.float32([0.0, -0.0, 1e-45, 1e-30, 1e9, 3e38, np.inf, np.nan])])
    assert v.dtype == np.float32
    v64 = np.where(np.isnan(v), np.inf, v.astype(np.float64))  # NaN counts in the last bin, as inf does
    want = np.histogram(np.minimum(v64, e[-1]), e.astype(np.float64))[0]
    np.testing.assert_array_equal(np.histogram(np.minimum(np.sqrt(v64), LENGTH_EDGES[-1]), LENGTH_EDGES)[0], want)
    assert want.sum() == v.size and (want > 0).all()
    np.testing.assert_array_equal(histograms([torch.from_numpy(v)])[0].numpy(), want)
    np.testing.assert_array_equal(histograms([torch.from_numpy(v[:0]), torch.from_numpy(v)])[0].numpy(),
                                  np.zeros(len(want)))


def _numpy_counts(t: torch.Tensor) -> np.ndarray:
    """np.histogram of squared lengths on SQUARED_EDGES, the last bin also counting larger values."""
    v = t.numpy().astype(np.float64).reshape(-1)
    return np.histogram(np.minimum(np.where(np.isnan(v), np.inf, v), SQUARED_EDGES[-1]),
                        SQUARED_EDGES.astype(np.float64))[0]


def test_all_histograms_of_a_batch_in_one_bincount_equal_each_alone():
    """Every layer's before/after lengths are counted in one bincount (keys shifted per row): each row
    equals that tensor counted alone by numpy, whatever the shapes and layouts."""
    from sge_viz.dissect.reduce import histograms

    rng = np.random.default_rng(2)
    tensors = [torch.from_numpy(rng.lognormal(0, 4, shape).astype(np.float32))
               for shape in ((4, 8, 7, 7), (4, 16, 3, 3), (1, 1, 1, 1))]
    tensors.append(tensors[0].permute(0, 2, 3, 1))  # not contiguous, as channels-last captures are
    got = histograms(tensors)
    assert got.shape == (4, len(SQUARED_EDGES) - 1) and got.dtype == torch.int64
    for row, t in zip(got, tensors):
        np.testing.assert_array_equal(row.numpy(), _numpy_counts(t))
        assert int(row.sum()) == t.numel()


def test_layers_reduced_together_equal_each_reduced_alone():
    """reduce_captures batches the totals of layers with the same group count and counts every histogram
    at once: with layers of different G, H, W and C in one call, each layer's partial is the one it
    gets alone, and its totals are the definitions recomputed here in float64."""
    from sge_viz.capture.recorder import LayerCapture
    from sge_viz.dissect.reduce import reduce_captures

    rng = np.random.default_rng(3)
    names = [f"img{i}" for i in range(5)]

    def capture(g, h, w, c):
        gate = torch.from_numpy(rng.random((5, g, h, w), dtype=np.float32))
        s1 = torch.from_numpy(rng.normal(size=(5, g, h, w)).astype(np.float32))
        s2 = torch.from_numpy(rng.lognormal(size=(5, g, h, w)).astype(np.float32))
        return LayerCapture(gate, s1, gate * s1, s2, gate.square() * s2, channels=c)

    caps = {"a": capture(4, 6, 6, 16), "b": capture(8, 3, 5, 32), "c": capture(4, 2, 2, 8)}
    together = reduce_captures(caps, list(caps), names, [None] * 5, K)
    for name, cap in caps.items():
        alone, got = reduce_captures({name: cap}, [name], names, [None] * 5, K).layers[name], together.layers[name]
        for field in ("gate_sum", "gate_sq", "var_before", "var_after", "hist_before", "hist_after"):
            np.testing.assert_array_equal(getattr(got, field), getattr(alone, field))
        assert got.top == alone.top
        g, h, w = cap.gate.shape[1:]
        n = cap.channels // g * h * w
        s1, s2 = cap.before.double().sum((2, 3)), cap.before_sq.double().sum((2, 3))
        var = s2 / n - (s1 / n) ** 2
        np.testing.assert_allclose(got.var_before, np.stack([var.sum(0), (var ** 2).sum(0)]), rtol=1e-5)
        np.testing.assert_allclose(got.gate_sq, cap.gate.double().square().sum((0, 2, 3)), rtol=1e-6)


def test_top_lists_break_score_ties_by_image_name():
    """Images that tie on a group's score enter its top-K by name, also at the K-th place (identical
    images in a set tie exactly); rows and cols are the first maximum's."""
    from sge_viz.capture.recorder import LayerCapture
    from sge_viz.dissect.reduce import reduce_captures

    b, g, h, w = 8, 3, 5, 6
    maps = torch.from_numpy(np.random.default_rng(1).random((1, g, h, w), dtype=np.float32)).repeat(b, 1, 1, 1)
    maps[3, 1] *= 2  # group 1: image 3 wins, the rest tie
    maps[:, 2] = 1.0  # group 2: flat maps, every position of every image ties
    names = [f"img{c}" for c in "hgfedcba"]
    capture = LayerCapture(torch.full((b, g, h, w), 0.5), maps, maps, maps, maps, channels=2 * g)
    layer = reduce_captures({"l": capture}, ["l"], names, [None] * b, K).layers["l"]
    for group in range(g):
        flat = maps[:, group].reshape(b, -1).numpy()
        want = sorted(((float(np.sqrt(flat[i].max())), names[i], *divmod(int(flat[i].argmax()), w))
                       for i in range(b)), key=lambda e: (-e[0], *e[1:]))[:K]
        assert layer.top[group] == want
    assert [e[1] for e in layer.top[0]] == ["imga", "imgb", "imgc"]
    assert [e[1] for e in layer.top[1]] == ["imge", "imga", "imgb"]
    assert [e[1:] for e in layer.top[2]] == [("imga", 0, 0), ("imgb", 0, 0), ("imgc", 0, 0)]


def test_top_list_merge_is_the_best_k_of_both_sides_in_the_total_order():
    """Merged top lists equal Python's sort of all entries by (-score, image, row, col), with many exact
    ties on the score and on the name; the JSON lists round-trip."""
    from sge_viz.dissect.summary import TopLists

    rng = np.random.default_rng(5)
    g, k = 4, 5

    def entries(n):
        return [[(float(rng.integers(0, 3)), f"img{rng.integers(0, 4)}", int(rng.integers(0, 3)), int(rng.integers(0, 3)))
                 for _ in range(n)] for _ in range(g)]

    a, b = entries(6), entries(7)
    want = [sorted(x + y, key=lambda e: (-e[0], *e[1:]))[:k] for x, y in zip(a, b)]
    merged = TopLists.best(*TopLists.from_lists(a, g).fields(), k).merge(TopLists.best(*TopLists.from_lists(b, g).fields(), k), k)
    assert merged.as_lists() == want
    assert TopLists.from_lists(merged.as_lists(), g).as_lists() == want
    assert TopLists.empty(g).merge(merged, k).as_lists() == want
