"""The out-of-domain verdict in a dissection: per image in summary.json, marked in the pictures, or left
out on request; a gates-only model says it gives none. The true class of a shipped example scene beside the
model's answer. And the report page: styled, Fig. 2 named, links."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from dissect_helpers import make_image_set, summaries_equal, tiny_loaded
from PIL import Image

from sge_viz.capture.analysis import analyze, predict
from sge_viz.cli import main
from sge_viz.dissect.engine import run_local
from sge_viz.dissect.pictures import TILE
from sge_viz.dissect.report import MARK, write_report
from sge_viz.dissect.summary import summary_dict
from sge_viz.io.examples import example_classes
from sge_viz.io.images import open_image
from sge_viz.io.inputs import collect
from sge_viz.models.factory import create_model
from sge_viz.resources import examples_dir
from sge_viz.viz import GAP

# Three of the demo model's own scenes and three photos it was not trained on.
# The default model's own kind of scene (its randomised ones) and three photos.
NAMES = ("scene_wild_01.png", "scene_wild_02.png", "scene_wild_03.png", "astronaut.jpg", "chelsea.jpg", "coffee.jpg")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ood") / "set"
    folder.mkdir()
    for name in NAMES:
        shutil.copyfile(examples_dir() / name, folder / name)
    loaded = create_model(device="cpu")
    assert loaded.ood is not None
    return loaded, folder, collect([folder]).items


def test_every_image_gets_the_verdict_analyze_gives(demo, tmp_path):
    loaded, folder, items = demo
    partial = run_local(loaded, items, 2, batch_size=4)
    out = tmp_path / "report"
    summary = write_report(out, partial, loaded, items)
    ood = json.loads((out / "summary.json").read_text())["out_of_domain"]
    assert ood == json.loads(json.dumps(summary["out_of_domain"]))
    assert ood["detector"]["threshold"] == loaded.ood.threshold and not ood["left_out"]
    want = {name: analyze(loaded, open_image(folder / name)).ood for name in NAMES}
    assert [i["image"] for i in ood["images"]] == sorted(NAMES)
    for entry in ood["images"]:
        assert entry["out_of_domain"] == want[entry["image"]].out_of_domain
        np.testing.assert_allclose(entry["value"], want[entry["image"]].value, rtol=1e-4)
    rejected = {i["image"] for i in ood["images"] if i["out_of_domain"]}
    assert rejected == {"astronaut.jpg", "chelsea.jpg", "coffee.jpg"} and ood["count"] == 3
    # Marked where they are shown: a red frame on their gallery tiles (and only theirs), a badge on the page.
    framed = 0
    for name, layer in summary["layers"].items():
        for g in layer["per_group"]:
            picture = np.asarray(Image.open(out / "groups" / name / f"g{g['group']:02d}.png").convert("RGB"))
            top = picture.shape[0] - TILE
            for rank, t in enumerate(g["top"]):
                x = rank * (TILE + GAP)
                edge = picture[top + TILE // 2, x]  # the middle of the tile's left edge
                assert (tuple(edge) == MARK) == (t["image"] in rejected), (name, g["group"], t["image"])
                framed += t["image"] in rejected
    assert framed > 0
    page = (out / "index.html").read_text()
    assert page.count("<span class='ood'") >= framed and "3 of 6 images are out of domain" in page


def test_skip_out_of_domain_equals_a_run_on_the_in_domain_images(demo, tmp_path):
    loaded, folder, items = demo
    kept = run_local(loaded, items, 2, batch_size=4, skip_out_of_domain=True)
    inside = run_local(loaded, [i for i in items if i.name.startswith("scene_")], 2, batch_size=4)
    assert kept.images == 3
    assert sorted(s["path"] for s in kept.skipped) == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert all("out of domain" in s["reason"] and "--skip-out-of-domain" in s["reason"] for s in kept.skipped)
    assert len(kept.verdicts) == 6  # every image still has its verdict
    got, want = summary_dict(kept, {}), summary_dict(inside, {})
    for d in (got, want):
        d.pop("skipped"), d.pop("out_of_domain")
    summaries_equal(got, want, rtol=1e-5)  # other batches: float32 rounding of the convolutions
    # Through the CLI: the report says they were left out, and no picture shows them.
    out = tmp_path / "cli"
    assert main(["dissect", str(folder), "--out", str(out), "--top-k", "2", "--skip-out-of-domain"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["out_of_domain"]["left_out"] and summary["out_of_domain"]["count"] == 3
    assert all(not t["image"].endswith(".jpg") for layer in summary["layers"].values()
               for g in layer["per_group"] for t in g["top"])
    assert "left out of every number and picture" in (out / "index.html").read_text()


def test_a_gates_only_model_says_it_gives_no_verdict(tmp_path, capsys):
    make_image_set(tmp_path / "set", count=3, masks=0)
    loaded, ckpt = tiny_loaded(tmp_path)
    assert getattr(loaded, "ood", None) is None
    out = tmp_path / "out"
    assert main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "out-of-domain verdict: none" in capsys.readouterr().out
    ood = json.loads((out / "summary.json").read_text())["out_of_domain"]
    assert ood["detector"] is None and ood["images"] == [] and "no out-of-domain detector" in ood["verdict"]
    assert "carries no out-of-domain detector" in (out / "index.html").read_text()
    code = main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--skip-out-of-domain"])
    assert code == 2 and "no out-of-domain detector" in capsys.readouterr().err


def test_example_scenes_carry_their_true_class_beside_the_models_answer(demo, tmp_path, capsys):
    loaded, folder, _ = demo
    mine = tmp_path / "set"
    shutil.copytree(folder, mine)
    # A user's own file under a shipped name is not labelled: the content decides, not the name.
    shutil.copyfile(examples_dir() / "scene_wild_05.png", mine / "scene_wild_04.png")
    out = tmp_path / "out"
    assert main(["dissect", str(mine), "--out", str(out), "--top-k", "2", "--no-pictures", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    truths = json.loads((out / "summary.json").read_text())["true_classes"]
    scenes = [n for n in NAMES if n.startswith("scene")]
    assert [i["image"] for i in truths["images"]] == scenes and truths["count"] == 3
    for entry in truths["images"]:
        said = predict(loaded, open_image(folder / entry["image"]), k=1)[0]  # the library's own answer
        assert entry["true_class"] == example_classes()[entry["image"]]
        assert entry["predicted"] == said.label and entry["right"] == (said.label == entry["true_class"])
        np.testing.assert_allclose(entry["probability"], said.probability, atol=1e-3)
    assert printed["true_classes"] == {"count": 3, "right": truths["right"]}
    assert truths["right"] == sum(i["right"] for i in truths["images"])
    page = (out / "index.html").read_text()
    assert f"{truths['right']} of 3 shipped example scenes classified right" in page
    for entry in truths["images"]:
        mark = "✓" if entry["right"] else f"✗ (model says {entry['predicted']}"
        assert f"{entry['image']}: true class {entry['true_class']} {mark}" in page.replace("&#x27;", "'")
    assert main(["dissect", str(mine), "--out", str(tmp_path / "again"), "--top-k", "2", "--no-pictures"]) == 0
    assert f"true class: right on {truths['right']} of 3 shipped example scenes" in capsys.readouterr().out
    # A user's images only: no true class is claimed, and the report has no such section.
    own = tmp_path / "own"
    make_image_set(own, count=3, masks=0)
    assert main(["dissect", str(own), "--out", str(tmp_path / "own_out"), "--no-pictures"]) == 0
    assert json.loads((tmp_path / "own_out" / "summary.json").read_text())["true_classes"]["count"] == 0
    assert "True classes" not in (tmp_path / "own_out" / "index.html").read_text()
    assert "true class" not in capsys.readouterr().out


def test_report_page_is_styled_names_fig2_images_and_its_links_open_layers(demo, tmp_path):
    loaded, folder, items = demo
    out = tmp_path / "report"
    summary = write_report(out, run_local(loaded, items, 2, batch_size=4), loaded, items)
    page = (out / "index.html").read_text()
    assert "<style>" in page and "header" in page and "font-family" in page
    ids = re.findall(r"<details class='layer' id='([^']+)'", page)
    links = re.findall(r"<nav>.*?</nav>", page, re.S)[0]
    assert re.findall(r"href='#([^']+)'", links) == ids == [n for n in summary["layers"]]
    # Fig. 2 names its images: a strip above each column of the first row (more rows than the bare panels).
    fig2 = np.asarray(Image.open(next((out / "figures").glob("fig2_*.png"))))
    assert fig2.shape[0] > 3 * 2 * 112
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium to open the page")
    target = ids[2]
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", (out / "index.html").as_uri() + "#" + target], capture_output=True, text=True,
                         timeout=120).stdout
    opened = re.findall(r'<details class="layer" id="([^"]+)" open', dom)
    assert opened == [target]

