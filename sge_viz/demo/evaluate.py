"""Measure the demo model on held-out Cluttered Fashion-MNIST and write the model card.

    python -m sge_viz.demo.evaluate            # 5000 held-out scenes from t10k, seed EVAL_SEED

Reports top-1 of the SGE model and its plain twin, and for every SGE layer how
well its gates pick out the item: each group's gate map is upsampled to the
canvas and scored by ROC-AUC against the item's pixel mask (per image, then
averaged over images per group); the table gives the median over groups and the
share of groups whose AUC is above 0.5, the ratio of the mean gate on item
pixels to the mean gate on clutter pixels, and the same AUC for the group
activation maps before and after SGE. Results go into checkpoints/MODEL_CARD.md
(between the "measured" markers) and into the checkpoint's metadata.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..capture.analysis import analyze_views
from ..device import pick_device
from ..errors import SGEVizError
from ..metrics.localisation import gate_mask_auc, roc_auc
from ..models.checkpoint import CONFIG_KEY, build_for, load_strict, read_checkpoint, read_metadata, save_safetensors
from ..models.factory import LoadedModel, load_checkpoint
from ..viz.resize import resize_maps
from . import DEMO_CHECKPOINT, MODEL_CARD, PLAIN_CHECKPOINT
from .data import ClutteredFashionMNIST

EVAL_SEED = 20250905  # held-out scenes; training never uses this seed (and draws from the train split)
EVAL_SAMPLES = 5000
START, END = "<!-- measured:start -->", "<!-- measured:end -->"


@dataclass
class ImageLayerScores:
    """One image, one SGE layer: per-group numbers (G,)."""

    gate_auc: np.ndarray
    before_auc: np.ndarray | None
    after_auc: np.ndarray | None
    item_gate: np.ndarray  # mean gate over item pixels
    clutter_gate: np.ndarray  # mean gate over clutter pixels (NaN when the scene has none)


def score_layer(gate: np.ndarray, before: np.ndarray | None, after: np.ndarray | None, item: np.ndarray,
                clutter: np.ndarray) -> ImageLayerScores:
    up = resize_maps(gate, *item.shape).reshape(gate.shape[0], -1)
    item_gate = up[:, item.ravel()].mean(axis=1)
    clutter_gate = up[:, clutter.ravel()].mean(axis=1) if clutter.any() else np.full(gate.shape[0], np.nan)
    return ImageLayerScores(
        roc_auc(up, item.ravel()),  # = gate_mask_auc(gate, item), reusing the upsampled maps
        None if before is None else gate_mask_auc(before, item),
        None if after is None else gate_mask_auc(after, item),
        item_gate, clutter_gate)


def _score_image(job: tuple) -> list[ImageLayerScores]:
    layers, item, clutter = job
    return [score_layer(g, b, a, item, clutter) for g, b, a in layers]


def plain_twin(path: Path, device: torch.device) -> LoadedModel:
    """The control network: the demo architecture with SGE removed, loaded strictly."""
    contents = read_checkpoint(path)
    model, config = build_for(contents, path, use_sge=False)
    load_strict(model, contents.state_dict, path, config.arch + " (plain twin)")
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, config, f"{config.arch} plain twin", str(path), device)


def measure(loaded: LoadedModel, count: int = EVAL_SAMPLES, seed: int = EVAL_SEED, batch_size: int = 250,
            activations: bool = True, workers: int = 0, root: str | None = None, progress: bool = False) -> dict:
    """Accuracy and (for an SGE model) per-layer localisation scores on ``count`` held-out scenes."""
    dataset = ClutteredFashionMNIST("test", seed=seed, length=count, root=root)
    correct = 0
    per_layer: dict[str, list[ImageLayerScores]] = {}
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for start in tqdm(range(0, count, batch_size), desc=loaded.name, disable=not progress, leave=False):
            samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
            analyses = analyze_views(loaded, [s.image for s in samples], activations=activations)
            correct += sum(a.predictions[0].index == s.label for a, s in zip(analyses, samples))
            jobs = [([(layer.gate, layer.before if activations else None, layer.after if activations else None)
                      for layer in a.layers], s.item_mask, s.clutter_mask) for a, s in zip(analyses, samples)]
            scored = pool.map(_score_image, jobs, chunksize=8) if pool else map(_score_image, jobs)
            names = analyses[0].layer_names
            for image_scores in scored:
                for name, sc in zip(names, image_scores):
                    per_layer.setdefault(name, []).append(sc)
    finally:
        if pool:
            pool.shutdown()
    return {"samples": count, "seed": seed, "split": "t10k", "top1": correct / count,
            "layers": {name: summarise(scores) for name, scores in per_layer.items()}}


def summarise(scores: list[ImageLayerScores]) -> dict:
    gate = np.nanmean(np.stack([s.gate_auc for s in scores]), axis=0)  # (G,) mean over images
    item = np.stack([s.item_gate for s in scores])
    clutter = np.stack([s.clutter_gate for s in scores])
    has_clutter = ~np.isnan(clutter[:, 0])
    out = {
        "groups": int(gate.shape[0]),
        "gate_auc_median": float(np.median(gate)),
        "gate_auc_share_above_half": float(np.mean(gate > 0.5)),
        "gate_auc_per_group": [round(float(v), 4) for v in gate],
        # Pooled over groups and images: mean gate on item pixels / mean gate on clutter pixels.
        "item_clutter_ratio": float(item[has_clutter].mean() / clutter[has_clutter].mean()),
        "mean_gate_item": float(item.mean()),
        "mean_gate_clutter": float(clutter[has_clutter].mean()),
    }
    if scores[0].before_auc is not None:
        out["before_auc_median"] = float(np.median(np.nanmean(np.stack([s.before_auc for s in scores]), axis=0)))
        out["after_auc_median"] = float(np.median(np.nanmean(np.stack([s.after_auc for s in scores]), axis=0)))
    return out


def markdown_table(sge: dict, plain_top1: float | None) -> str:
    lines = [
        f"Held-out set: {sge['samples']} scenes generated from Fashion-MNIST **t10k** with seed {sge['seed']} "
        "(never used in training; training draws only from the train split).",
        "",
        "| model | top-1 |",
        "| --- | --- |",
        f"| SGE demo model | {100 * sge['top1']:.2f}% |",
    ]
    if plain_top1 is not None:
        lines.append(f"| plain twin (same network, SGE removed, same recipe) | {100 * plain_top1:.2f}% |")
    lines += [
        "",
        "Per SGE layer. Gate AUC: each group's gate map upsampled bilinearly to the canvas and scored by "
        "ROC-AUC against the item mask (item pixels positive, every other pixel negative) per scene, then "
        "averaged over scenes per group; the table gives the median over groups and the share of groups above "
        "0.5. Item/clutter ratio: mean gate on item pixels over mean gate on clutter pixels, pooled over groups "
        "and scenes (scenes with clutter). Activation AUC: the same median AUC for each group's summed "
        "activation map entering SGE (before) and leaving it (after).",
        "",
        "| layer | groups | gate map | median gate AUC | groups with AUC > 0.5 | gate item/clutter ratio "
        "| activation AUC before SGE | after SGE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in sge["layers"].items():
        lines.append(
            f"| {name} | {m['groups']} | {m.get('map', '')} | {m['gate_auc_median']:.3f} | "
            f"{100 * m['gate_auc_share_above_half']:.0f}% | {m['item_clutter_ratio']:.3f} | "
            f"{m.get('before_auc_median', float('nan')):.3f} | {m.get('after_auc_median', float('nan')):.3f} |")
    return "\n".join(lines)


def update_model_card(path: Path, measured: str, template: str) -> None:
    """Replace what lies between the markers; write the whole template when there is no card yet."""
    block = f"{START}\n{measured}\n{END}"
    text = path.read_text() if path.is_file() else template
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_metrics(checkpoint: Path, metrics: dict) -> None:
    """Rewrite the checkpoint with the metrics added to its metadata (weights unchanged)."""
    loaded = load_checkpoint(checkpoint, device="cpu")
    extra = {k: v for k, v in read_metadata(checkpoint).items() if k not in (CONFIG_KEY, "arch", "metrics")}
    extra["metrics"] = metrics
    save_safetensors(loaded.model, loaded.config, checkpoint, extra)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sge_viz.demo.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    p.add_argument("--plain-checkpoint", type=Path, default=PLAIN_CHECKPOINT)
    p.add_argument("--samples", type=int, default=EVAL_SAMPLES)
    p.add_argument("--seed", type=int, default=EVAL_SEED)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="processes scoring the maps")
    p.add_argument("--data-root", default=None)
    p.add_argument("--card", type=Path, default=MODEL_CARD)
    p.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    p.add_argument("--no-write", action="store_true", help="print only; leave the card and checkpoint alone")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.samples < 5000 and not args.no_write:
            raise SGEVizError("The model card needs at least 5000 held-out samples; use --no-write for a quick look.")
        device = pick_device(args.device)
        t0 = time.perf_counter()
        loaded = load_checkpoint(args.checkpoint, device=device)
        sge = measure(loaded, args.samples, args.seed, workers=args.workers, root=args.data_root, progress=True)
        size = loaded.config.input_size
        with torch.inference_mode():
            from .capture import GateRecorder
            with GateRecorder(loaded.model, activations=False) as rec:
                loaded.model(torch.zeros(1, 3, size, size, device=device))
            for name, cap in rec.captures.items():
                sge["layers"][name]["map"] = f"{cap.gate.shape[-2]}x{cap.gate.shape[-1]}"
        plain_top1 = None
        if args.plain_checkpoint.is_file():
            plain = plain_twin(args.plain_checkpoint, device)
            plain_top1 = measure(plain, args.samples, args.seed, activations=False, root=args.data_root)["top1"]
            sge["plain_top1"] = plain_top1
        else:
            print(f"no plain twin at {args.plain_checkpoint}: train it with `python -m sge_viz.train --plain`",
                  file=sys.stderr)
        table = markdown_table(sge, plain_top1)
        print(table)
        print(f"evaluated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(sge, indent=1))
        if not args.no_write:
            write_metrics(args.checkpoint, sge)
            update_model_card(args.card, table, f"# Model card: {loaded.config.arch}\n")
            print(f"wrote {args.card} and the metrics into {args.checkpoint}", file=sys.stderr)
    except SGEVizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
