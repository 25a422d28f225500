"""The paper's Figs. 2-4 reproduced on the demo model's held-out scenes (needs dataset-fashion-mnist).

    python bench/dissect_scenes.py [--count 400]     # ~1 minute on 2 CPU cores

Writes ``count`` held-out scenes of the shipped model's recipe (t10k, the evaluation seed) with their item masks into a temporary
folder, dissects them with the shipped demo model, prints which groups track the item (mask AUC) and
whether SGE raises the groups' variance and shifts the vector lengths, appends the findings to
bench/DISSECT.md and copies the deepest layer's figures to docs/screenshots/dissect_*.png.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sge_viz.dissect.engine import run_local  # noqa: E402
from sge_viz.dissect.report import figure_groups, write_report  # noqa: E402
from sge_viz.io.inputs import collect  # noqa: E402
from sge_viz.io.masks import mask_path  # noqa: E402
from sge_viz.models.checkpoint import read_metadata  # noqa: E402
from sge_viz.models.factory import create_model  # noqa: E402
from sge_viz.models.registry import DEMO_ARCH  # noqa: E402
from sge_viz.resources import demo_checkpoint  # noqa: E402
from training.evaluate import EVAL_SEED  # noqa: E402
from training.train import held_out_scenes, scenes_of  # noqa: E402

TRACKS = 0.75  # a group "tracks the item" when its mean gate-vs-mask AUC is at least this


def weighted_median(edges: np.ndarray, counts: np.ndarray) -> float:
    centres = np.sqrt(np.maximum(edges[:-1], edges[1] / 10) * edges[1:])
    cum = np.cumsum(counts)
    return float(centres[np.searchsorted(cum, cum[-1] / 2)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=400)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "DISSECT.md")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sge_scenes_"))
    try:
        recipe = scenes_of(read_metadata(demo_checkpoint()))  # the shipped model's own scene recipe
        data = held_out_scenes(recipe, EVAL_SEED, args.count)
        scenes = tmp / "scenes"
        scenes.mkdir()
        for i in range(args.count):
            sample = data[i]
            path = scenes / f"scene_{i:04d}.png"
            Image.fromarray(sample.image).save(path)
            Image.fromarray(sample.item_mask.astype(np.uint8) * 255).save(mask_path(path))
        loaded = create_model(DEMO_ARCH, device="cpu")  # the model whose recipe drew the scenes
        items = collect([scenes]).items
        partial = run_local(loaded, items, 9, batch_size=32)
        summary = write_report(tmp / "out", partial, loaded, items)
        lines = ["", f"## Figs. 2-4 on the demo model's held-out scenes ({summary['images']} scenes)", "",
                 f"`python bench/dissect_scenes.py --count {args.count}`: held-out scenes of the model's own recipe "
                 f"({recipe}) "
                 "(t10k, evaluation seed) with their exact item masks, dissected with the shipped demo model.", "",
                 f"| layer | groups | tracking the item (mask AUC >= {TRACKS}) | best groups (AUC) | "
                 "groups with variance after > before | median vector length before -> after |",
                 "|---|---|---|---|---|---|"]
        for name, layer in summary["layers"].items():
            groups = layer["per_group"]
            aucs = np.array([g["mask_auc"] for g in groups], dtype=np.float64)
            best = np.argsort(-aucs)[:3]
            up = sum(g["variance_after"]["mean"] > g["variance_before"]["mean"] for g in groups)
            hist = layer["length_histogram"]
            edges = np.asarray(hist["edges"])
            mb = weighted_median(edges, np.asarray(hist["before"]))
            ma = weighted_median(edges, np.asarray(hist["after"]))
            lines.append(f"| {name} | {len(groups)} | {int((aucs >= TRACKS).sum())} | "
                         + ", ".join(f"g{b} ({aucs[b]:.3f})" for b in best)
                         + f" | {up} of {len(groups)} | {mb:.3g} -> {ma:.3g} |")
        deepest = list(summary["layers"])[-1]
        chosen = figure_groups(summary, deepest)
        lines += ["", f"AUCs are means over the {groups[0]['mask_images']} scenes with a mask (all of them). "
                  f"Fig. 2 shows {deepest} groups {', '.join(map(str, chosen))}.", "",
                  "![Fig. 2](../docs/screenshots/dissect_fig2.png)",
                  "![Fig. 3](../docs/screenshots/dissect_fig3.png) ![Fig. 4](../docs/screenshots/dissect_fig4.png)"]
        shots = ROOT / "docs" / "screenshots"
        for key in ("fig2", "fig3", "fig4"):  # small files for the repository: 256-colour PNGs
            with Image.open(tmp / "out" / "figures" / f"{key}_{deepest}.png") as picture:
                picture.convert("RGB").quantize(256).save(shots / f"dissect_{key}.png", optimize=True)
        text = "\n".join(lines) + "\n"
        print(text)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
