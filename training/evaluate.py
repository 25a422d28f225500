"""Measure the demo model on held-out Cluttered Fashion-MNIST and write the model card.

    python -m training.evaluate            # 5000 held-out scenes from t10k, seed EVAL_SEED

    python -m training.evaluate --shifts   # the shift suite (training.shifts) -> the card's "Shift suite"

Reports top-1 of the SGE model and its plain twin, and for every SGE layer how
well its gates pick out the item: each group's gate map is upsampled to the
canvas and scored by ROC-AUC against the item's pixel mask (per image, then
averaged over images per group); the table gives the median over groups and the
share of groups whose AUC is above 0.5, the ratio of the mean gate on item
pixels to the mean gate on clutter pixels, and the same AUC for each group's
vector length ||x_g(p)||_2 over its channels before and after SGE. Results go
into checkpoints/MODEL_CARD.md (between the "measured" markers) and into the
checkpoint's metadata; ``--shifts`` writes only the card's shift-suite block and
never touches a checkpoint.

Scenes whose canvas is not the model's input size (the randomised ones) are
resized to it as the app does (``data.view``) and scored on the model's input
grid, against the item mask resized the same way (a pixel is the item's when the
item covers at least half of it, ``mask_view``).
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

from sge_viz.capture.analysis import analyze_views
from sge_viz.device import pick_device
from sge_viz.errors import SGEVizError
from sge_viz.metrics.localisation import gate_mask_auc, roc_auc
from sge_viz.models.checkpoint import (
    CONFIG_KEY,
    build_for,
    load_strict,
    read_checkpoint,
    read_metadata,
    save_safetensors,
)
from sge_viz.models.factory import LoadedModel, load_checkpoint
from sge_viz.resize import resize_maps

from . import DEMO_CHECKPOINT, MODEL_CARD, PLAIN_CHECKPOINT
from .data import view
from .shifts import SHIFTS, Shift
from .train import held_out_scenes, scenes_of

EVAL_SEED = 20250905  # held-out scenes; training never uses this seed (and draws from the train split)
EVAL_SAMPLES = 5000
START, END = "<!-- measured:start -->", "<!-- measured:end -->"
SHIFT_START, SHIFT_END = "<!-- shifts:start -->", "<!-- shifts:end -->"


@dataclass
class ImageLayerScores:
    """One image, one SGE layer: per-group numbers (G,)."""

    gate_auc: np.ndarray
    before_auc: np.ndarray | None  # AUC of the group's vector length entering SGE
    after_auc: np.ndarray | None  # ... and leaving it
    item_gate: np.ndarray  # mean gate over item pixels
    clutter_gate: np.ndarray  # mean gate over clutter pixels (NaN when the scene has none)


def score_layer(gate: np.ndarray, before: np.ndarray | None, after: np.ndarray | None, item: np.ndarray,
                clutter: np.ndarray) -> ImageLayerScores:
    """Per-group scores of one layer: ``gate`` (G, h, w) in (0, 1); ``before``/``after`` (G, h, w) the group
    vector lengths entering/leaving SGE (>= 0) or None; ``item``/``clutter`` (S, S) bool masks."""
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


def mask_view(mask: np.ndarray, size: int) -> np.ndarray:
    """A canvas mask (S, S) bool on the model's input grid (size, size) bool: resized like the image
    (bilinear, area-averaging when shrinking), then pixels at least half covered; unchanged when S == size."""
    if mask.shape == (size, size):
        return mask
    from PIL import Image

    covered = Image.fromarray(mask.astype(np.float32), "F").resize((size, size), Image.BILINEAR, reducing_gap=None)
    return np.asarray(covered) >= 0.5


def measure_dataset(loaded: LoadedModel, dataset, count: int, batch_size: int = 250, activations: bool = True,
                    workers: int = 0, progress: bool = False, desc: str = "") -> tuple[dict, np.ndarray]:
    """Accuracy and (for an SGE model) per-layer localisation scores on the first ``count`` scenes of
    ``dataset``; also the per-scene correctness (count,) bool, for paired comparisons."""
    size = loaded.config.input_size
    correct = np.zeros(count, dtype=bool)
    per_layer: dict[str, list[ImageLayerScores]] = {}
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for start in tqdm(range(0, count, batch_size), desc=desc or loaded.name, disable=not progress, leave=False):
            samples = [dataset[i] for i in range(start, min(count, start + batch_size))]
            analyses = analyze_views(loaded, [view(s.image, size) for s in samples], activations=activations)
            correct[start:start + len(samples)] = [a.predictions[0].index == s.label
                                                   for a, s in zip(analyses, samples)]
            if not analyses[0].layers:
                continue
            jobs = [([(layer.gate, layer.before_length if activations else None,
                       layer.after_length if activations else None) for layer in a.layers],
                     mask_view(s.item_mask, size), mask_view(s.clutter_mask, size) & ~mask_view(s.item_mask, size))
                    for a, s in zip(analyses, samples)]
            scored = pool.map(_score_image, jobs, chunksize=8) if pool else map(_score_image, jobs)
            names = analyses[0].layer_names
            for image_scores in scored:
                for name, sc in zip(names, image_scores):
                    per_layer.setdefault(name, []).append(sc)
    finally:
        if pool:
            pool.shutdown()
    return {"samples": count, "top1": float(correct.mean()),
            "layers": {name: summarise(scores) for name, scores in per_layer.items()}}, correct


def measure(loaded: LoadedModel, count: int = EVAL_SAMPLES, seed: int = EVAL_SEED, batch_size: int = 250,
            activations: bool = True, workers: int = 0, root: str | None = None, progress: bool = False,
            scenes: str = "cluttered") -> dict:
    """Accuracy and (for an SGE model) per-layer localisation scores on ``count`` held-out scenes of the
    recipe ``scenes`` ("cluttered" or "wild", see ``train.SCENES``)."""
    dataset = held_out_scenes(scenes, seed, count, root)
    result, _ = measure_dataset(loaded, dataset, count, batch_size, activations, workers, progress)
    return {"samples": count, "seed": seed, "split": "t10k", "scenes": scenes, "top1": result["top1"],
            "layers": result["layers"]}


def summarise(scores: list[ImageLayerScores]) -> dict:
    gate = np.nanmean(np.stack([s.gate_auc for s in scores]), axis=0)  # (G,) mean over images
    item = np.stack([s.item_gate for s in scores])
    clutter = np.stack([s.clutter_gate for s in scores])
    has_clutter = ~np.isnan(clutter[:, 0])
    ratio = float(item[has_clutter].mean() / clutter[has_clutter].mean()) if has_clutter.any() else float("nan")
    out = {
        "groups": int(gate.shape[0]),
        "gate_auc_median": float(np.median(gate)),
        "gate_auc_share_above_half": float(np.mean(gate > 0.5)),
        "gate_auc_per_group": [round(float(v), 4) for v in gate],
        # Pooled over groups and images: mean gate on item pixels / mean gate on clutter pixels.
        "item_clutter_ratio": ratio,
        "mean_gate_item": float(item.mean()),
        "mean_gate_clutter": float(clutter[has_clutter].mean()) if has_clutter.any() else float("nan"),
    }
    if scores[0].before_auc is not None:
        # Vector length ||x_g(p)||_2 of each group before and after SGE (replaces the signed channel sums
        # reported before; a checkpoint evaluated earlier carries those as before_auc_median/after_auc_median).
        out["before_length_auc_median"] = float(np.median(np.nanmean(np.stack([s.before_auc for s in scores]), 0)))
        out["after_length_auc_median"] = float(np.median(np.nanmean(np.stack([s.after_auc for s in scores]), 0)))
    return out


_SCENE_WORDS = {"cluttered": "Cluttered Fashion-MNIST scenes (the original recipe)",
                "wild": "randomised scenes (the training distribution, `SceneConfig()`, test photos)"}


def markdown_table(sge: dict, plain_top1: float | None) -> str:
    lines = [
        f"Held-out set: {sge['samples']} {_SCENE_WORDS[sge.get('scenes', 'cluttered')]} generated from "
        f"Fashion-MNIST **t10k** with seed {sge['seed']} (never used in training; training draws only from the "
        "train split" + (" and the train photos" if sge.get("scenes") == "wild" else "") + ").",
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
        "and scenes (scenes with clutter). Vector-length AUC: the same median AUC for each group's vector length "
        "||x_g(p)||_2 over its channels at every position, entering SGE (before) and leaving it (after).",
        "",
        "| layer | groups | gate map | median gate AUC | groups with AUC > 0.5 | gate item/clutter ratio "
        "| vector-length AUC before SGE | after SGE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in sge["layers"].items():
        lines.append(
            f"| {name} | {m['groups']} | {m.get('map', '')} | {m['gate_auc_median']:.3f} | "
            f"{100 * m['gate_auc_share_above_half']:.0f}% | {m['item_clutter_ratio']:.3f} | "
            f"{m.get('before_length_auc_median', float('nan')):.3f} | "
            f"{m.get('after_length_auc_median', float('nan')):.3f} |")
    return "\n".join(lines)


# --- the shift suite -------------------------------------------------------------------------

TARGET_IN_DISTRIBUTION, TARGET_SHIFT, TARGET_GATE_AUC = 0.90, 0.85, 0.75


def measure_shift(shift: Shift, sge: LoadedModel, plain: LoadedModel | None, count: int | None = None,
                  workers: int = 0, root: str | None = None, progress: bool = False) -> dict:
    """Top-1 of both models, their paired difference with its standard error over the scenes, and the
    SGE model's per-layer localisation scores on one shift (its first ``count`` scenes, default all)."""
    count = shift.count if count is None else count
    dataset = shift.dataset(root)
    result, sge_correct = measure_dataset(sge, dataset, count, workers=workers, progress=progress,
                                          desc=f"{shift.name} SGE")
    out = {"name": shift.name, "what": shift.what, "seed": shift.seed, "samples": count, "split": "t10k",
           "sge_top1": result["top1"], "layers": result["layers"]}
    layers = result["layers"]
    if layers:
        best = max(layers, key=lambda n: layers[n]["gate_auc_median"])
        out["best_layer"], out["best_gate_auc_median"] = best, layers[best]["gate_auc_median"]
    if plain is not None:
        plain_result, plain_correct = measure_dataset(plain, dataset, count, activations=False, progress=progress,
                                                      desc=f"{shift.name} plain")
        diff = sge_correct.astype(np.float64) - plain_correct.astype(np.float64)
        out.update(plain_top1=plain_result["top1"], diff=float(diff.mean()),
                   diff_se=float(diff.std(ddof=1) / np.sqrt(count)))
    return out


def measure_shifts(sge: LoadedModel, plain: LoadedModel | None, shifts: tuple[Shift, ...] = SHIFTS,
                   count: int | None = None, workers: int = 0, root: str | None = None,
                   progress: bool = False) -> list[dict]:
    """``measure_shift`` for every shift, in order."""
    return [measure_shift(shift, sge, plain, count, workers, root, progress) for shift in shifts]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def shift_tables(results: list[dict], label: str = "the shipped SGE model") -> str:
    """The shift suite as markdown: accuracy, gate AUC per layer, vector-length AUC per layer, targets."""
    lines = [
        f"Model: {label}. Every shift is {results[0]['samples']} scenes from Fashion-MNIST **t10k** (test photos "
        "for photo backgrounds) with its own fixed seed (`training.shifts.SHIFTS`); SGE - plain is the paired "
        "difference on the same scenes, +- its standard error over scenes.",
        "",
        "| shift | what | seed | SGE top-1 | plain top-1 | SGE - plain | best layer | its median gate AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        diff = f"{100 * r['diff']:+.1f} +- {100 * r['diff_se']:.1f}" if "diff" in r else "-"
        lines.append(f"| {r['name']} | {r['what']} | {r['seed']} | {_pct(r['sge_top1'])} | "
                     f"{_pct(r.get('plain_top1'))} | {diff} | {r.get('best_layer', '-')} | "
                     f"{r.get('best_gate_auc_median', float('nan')):.3f} |")
    names = list(results[0]["layers"])
    header = "| layer | " + " | ".join(r["name"] for r in results) + " |"
    rule = "| --- |" + " --- |" * len(results)
    lines += ["", "Median gate AUC over groups, per SGE layer (gate map upsampled to the model's 64x64 input, "
              "ROC-AUC against the item mask on that grid, averaged over scenes per group):", "", header, rule]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['layers'][name]['gate_auc_median']:.3f}" for r in results)
                     + " |")
    lines += ["", "Vector-length AUC before -> after SGE, per layer: the median over groups of the ROC-AUC of "
              "each position's group vector length ||x_g(p)||_2 over the group's channels, against the item mask, "
              "entering SGE -> leaving it:", "", header, rule]
    for name in names:
        cells = []
        for r in results:
            m = r["layers"][name]
            cells.append(f"{m.get('before_length_auc_median', float('nan')):.3f} -> "
                         f"{m.get('after_length_auc_median', float('nan')):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Targets, checked on these numbers:", "", "| target | measured | met? |",
              "| --- | --- | --- |"]
    for r in results:
        goal = TARGET_IN_DISTRIBUTION if r["name"] == "held_out" else TARGET_SHIFT
        gap = r["sge_top1"] - goal
        lines.append(f"| {r['name']}: SGE top-1 >= {100 * goal:.0f}% | {_pct(r['sge_top1'])} | "
                     f"{'yes' if gap >= 0 else f'no, {-100 * gap:.1f} points short'} |")
    for r in results:
        if "diff" in r:
            verdict = ("yes" if r["diff"] >= 0 else
                       "no, within 2 standard errors" if -r["diff"] <= 2 * r["diff_se"] else "no")
            lines.append(f"| {r['name']}: SGE not below the plain twin | {100 * r['diff']:+.1f} +- "
                         f"{100 * r['diff_se']:.1f} points | {verdict} |")
    for r in results:
        if "best_gate_auc_median" in r:
            gap = r["best_gate_auc_median"] - TARGET_GATE_AUC
            lines.append(f"| {r['name']}: best layer's median gate AUC >= {TARGET_GATE_AUC} | "
                         f"{r['best_gate_auc_median']:.3f} ({r['best_layer']}) | "
                         f"{'yes' if gap >= 0 else f'no, {-gap:.3f} short'} |")
    return "\n".join(lines)


def seed_table(runs: list[list[dict]], seeds: list[str]) -> str:
    """Several training seeds' shift results (each a ``measure_shifts`` list with the plain twin) as one
    markdown table: per shift the mean top-1 of each variant, and SGE - plain as the mean over seeds of
    each seed's paired difference +- its standard error over seeds (std with ddof 1 / sqrt(seeds))."""
    names = [r["name"] for r in runs[0]]
    if any([r["name"] for r in run] != names for run in runs) or any("plain_top1" not in r for run in runs
                                                                      for r in run):
        raise SGEVizError("every seed's results must cover the same shifts, each with the plain twin")
    n = len(runs)
    lines = [f"Over {n} training seeds ({', '.join(seeds)}): each seed trains an SGE model and its plain twin "
             "in lockstep on that seed's scenes; SGE - plain is the mean over seeds of each seed's paired "
             "difference, +- its standard error over seeds (std with ddof 1 / sqrt(seeds)).", "",
             "| shift | SGE top-1 per seed | plain top-1 per seed | SGE - plain (points) | SGE not below plain? "
             "| best-layer median gate AUC per seed |",
             "| --- | --- | --- | --- | --- | --- |"]
    for k, name in enumerate(names):
        rows = [run[k] for run in runs]
        diff = np.array([100 * (r["sge_top1"] - r["plain_top1"]) for r in rows])
        se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        mean = float(diff.mean())
        verdict = "yes" if mean >= 0 else ("no, within 2 standard errors" if -mean <= 2 * se else "no")
        lines.append(f"| {name} | {' / '.join(_pct(r['sge_top1']) for r in rows)} | "
                     f"{' / '.join(_pct(r['plain_top1']) for r in rows)} | {mean:+.1f} +- {se:.1f} | {verdict} | "
                     + " / ".join(f"{r.get('best_gate_auc_median', float('nan')):.3f}" for r in rows) + " |")
    return "\n".join(lines)


def update_model_card(path: Path, measured: str, template: str, start: str = START, end: str = END,
                      heading: str = "") -> None:
    """Replace what lies between the markers; without them, append the block (under ``heading`` when given)
    to the card, or to the template when there is no card yet. Written atomically."""
    block = f"{start}\n{measured}\n{end}"
    text = path.read_text() if path.is_file() else template
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def set_metadata(checkpoint: Path, key: str, value) -> None:
    """Re-save the checkpoint with ``value`` (JSON-ready) under ``key`` in its metadata, everything else
    as it was; the weights are checked to stay bit-identical (else SGEVizError, file left alone)."""
    contents = read_checkpoint(checkpoint)
    model, _ = build_for(contents, checkpoint)
    load_strict(model, contents.state_dict, checkpoint, contents.config.arch)
    extra = {k: v for k, v in read_metadata(checkpoint).items() if k not in (CONFIG_KEY, "arch", key)}
    extra[key] = value
    tmp = checkpoint.with_name(checkpoint.name + ".new")
    save_safetensors(model, contents.config, tmp, extra)
    again = read_checkpoint(tmp).state_dict
    if again.keys() != contents.state_dict.keys() or not all(
            torch.equal(again[k], contents.state_dict[k]) for k in again):
        tmp.unlink()
        raise SGEVizError("re-saving changed the weights; the checkpoint was left alone")
    tmp.replace(checkpoint)


def write_metrics(checkpoint: Path, metrics: dict) -> None:
    """Re-save the checkpoint with the metrics in its metadata (weights bit-identical)."""
    set_metadata(checkpoint, "metrics", metrics)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--shifts", action="store_true",
                   help="run the shift suite instead and rewrite only the card's shift-suite block")
    p.add_argument("--shift-samples", type=int, default=None,
                   help="scenes per shift (default: each shift's own count, 1000; fewer only with --no-write)")
    p.add_argument("--only", default=None, help="comma-separated shift names (a quick look; needs --no-write)")
    p.add_argument("--label", default=None, help="how the shift tables name the model (default: the checkpoint)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="with --shifts: render the tables from results an earlier --shifts --json run wrote")
    p.add_argument("--seed-runs", type=Path, nargs="+", default=None, metavar="JSON",
                   help="with --shifts: also tabulate these --shifts --json results, one per training seed, "
                        "as SGE - plain over seeds")
    return p.parse_args(argv)


def run_shifts(args: argparse.Namespace) -> None:
    from .shifts import shift_by_name

    try:
        shifts = tuple(shift_by_name(n.strip()) for n in args.only.split(",")) if args.only else SHIFTS
    except ValueError as exc:
        raise SGEVizError(str(exc)) from None
    partial = args.only or (args.shift_samples is not None and args.shift_samples < min(s.count for s in shifts))
    if partial and not args.no_write:
        raise SGEVizError("The model card needs every shift at its full size; use --no-write for a quick look.")
    t0 = time.perf_counter()
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if [r["name"] for r in results] != [s.name for s in shifts]:
            raise SGEVizError(f"{args.from_json} holds other shifts than {', '.join(s.name for s in shifts)}.")
        with_plain = all("plain_top1" in r for r in results)
    else:
        device = pick_device(args.device)
        loaded = load_checkpoint(args.checkpoint, device=device)
        plain = plain_twin(args.plain_checkpoint, device) if args.plain_checkpoint.is_file() else None
        results = measure_shifts(loaded, plain, shifts, args.shift_samples, args.workers, args.data_root,
                                 progress=True)
        with_plain = plain is not None
    label = args.label or (f"`{args.checkpoint.name}`" + (f" and its plain twin `{args.plain_checkpoint.name}`"
                                                        if with_plain else ""))
    table = shift_tables(results, label)
    if args.seed_runs:
        try:
            runs = [json.loads(path.read_text()) for path in args.seed_runs]
        except (OSError, ValueError) as exc:
            raise SGEVizError(f"cannot read the seed results: {exc}") from None
        table += "\n\n" + seed_table(runs, [path.stem for path in args.seed_runs])
    print(table)
    print(f"evaluated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.no_write:
        update_model_card(args.card, table, "# Model card\n", SHIFT_START, SHIFT_END)
        print(f"wrote the shift suite into {args.card}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.shifts:
            run_shifts(args)
            return 0
        if args.samples < 5000 and not args.no_write:
            raise SGEVizError("The model card needs at least 5000 held-out samples; use --no-write for a quick look.")
        device = pick_device(args.device)
        t0 = time.perf_counter()
        loaded = load_checkpoint(args.checkpoint, device=device)
        scenes = scenes_of(read_metadata(args.checkpoint))
        sge = measure(loaded, args.samples, args.seed, workers=args.workers, root=args.data_root, progress=True,
                      scenes=scenes)
        size = loaded.config.input_size
        with torch.inference_mode():
            from sge_viz.capture.recorder import GateRecorder
            with GateRecorder(loaded.model, activations=False) as rec:
                loaded.model(torch.zeros(1, 3, size, size, device=device))
            for name, cap in rec.captures.items():
                sge["layers"][name]["map"] = f"{cap.gate.shape[-2]}x{cap.gate.shape[-1]}"
        plain_top1 = None
        if args.plain_checkpoint.is_file():
            plain = plain_twin(args.plain_checkpoint, device)
            plain_top1 = measure(plain, args.samples, args.seed, activations=False, root=args.data_root,
                                 scenes=scenes)["top1"]
            sge["plain_top1"] = plain_top1
        else:
            print(f"no plain twin at {args.plain_checkpoint}: train it with `python -m training.train --plain`",
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
