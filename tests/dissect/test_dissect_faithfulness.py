"""dissect --faithfulness: each image's gaps equal the per-image function's, the set's block recomputes from them,
the state carries them and the CLI writes them."""
from __future__ import annotations

import json

import numpy as np
import pytest
from dissect_helpers import make_image_set, tiny_loaded

from sge_viz.cli import main
from sge_viz.dissect.engine import fingerprint, run_local
from sge_viz.dissect.summary import Partial
from sge_viz.explain.faithfulness import VERDICTS, Band, Removal, image_gaps, set_block, verdict
from sge_viz.io.feed import load_item
from sge_viz.io.inputs import collect

STEP = Removal(step=0.25)


def test_each_image_gets_the_per_image_gaps_and_the_block_recomputes(tmp_path):
    make_image_set(tmp_path / "set", count=5, masks=0)
    loaded, _ = tiny_loaded(tmp_path)
    items = collect([tmp_path / "set"]).items
    partial = run_local(loaded, items, 3, batch_size=2, faithfulness=STEP)
    assert sorted(partial.faithfulness) == sorted(i.name for i in items)
    c = loaded.config
    for item in items:
        view = load_item(item, c.resize_size, c.input_size, 0).view
        want = image_gaps(loaded, view, STEP)
        got = partial.faithfulness[item.name]
        assert got["class"] == want["class"] and got["group_layer"] == want["group_layer"]
        np.testing.assert_allclose(got["groups"], want["groups"], atol=1e-9)
        np.testing.assert_allclose(list(got["layers"].values()), list(want["layers"].values()), atol=1e-9)
    band = Band([-0.1, 0.0, 0.1, 0.05], 2, 2)
    block = set_block(partial.faithfulness, STEP, band)
    records = [partial.faithfulness[n] for n in sorted(partial.faithfulness)]
    layer = next(iter(block["layers"]))
    gaps = np.array([r["layers"][layer] for r in records])
    assert block["layers"][layer]["mean_gap"] == pytest.approx(gaps.mean())
    assert block["layers"][layer]["positive"] == pytest.approx((gaps > 0).mean())
    said = [verdict(g, band, r["cam"]) for g, r in zip(gaps, records)]
    assert block["layers"][layer]["verdicts"] == {v: said.count(v) / len(said) for v in VERDICTS}
    means = [g["mean_gap"] for g in block["groups"]]
    assert [means[g] for g in block["ranking"]] == sorted(means, reverse=True)
    # The state and Ray carry it: the numbers' JSON keeps every record, and other settings are another run.
    assert Partial.from_json(partial.to_json()).faithfulness == json.loads(json.dumps(partial.faithfulness))
    assert fingerprint(items, "m", 3, None, faithfulness=STEP) != fingerprint(items, "m", 3, None)
    assert fingerprint(items, "m", 3, None, faithfulness=STEP) != fingerprint(items, "m", 3, None,
                                                                                faithfulness=Removal(step=0.5))


def test_cli_dissect_faithfulness_writes_the_block_and_the_section(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SGE_VIZ_CACHE", str(tmp_path / "cache"))
    make_image_set(tmp_path / "set", count=3, masks=0)
    _, ckpt = tiny_loaded(tmp_path)
    out = tmp_path / "out"
    code = main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out), "--no-pictures",
                 "--faithfulness", "--removal-step", "0.25", "--top-k", "2"])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    block = json.loads((out / "summary.json").read_text())["faithfulness"]
    assert block["images"] == 3 and block["removal"]["step"] == 0.25 and block["random_band"] is not None
    assert "faithfulness: mean gap" in stdout and f"Grad-CAM {block['cam']['mean_gap']:+.2f}" in stdout
    page = (out / "index.html").read_text()
    assert "Faithfulness: do the gates point at the evidence?" in page
    assert f"{block['cam']['mean_gap']:+.3f}" in page
    without = tmp_path / "plain"
    assert main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(without),
                 "--no-pictures"]) == 0
    assert "faithfulness" not in json.loads((without / "summary.json").read_text())
