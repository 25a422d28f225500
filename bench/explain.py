"""The class-evidence benchmark and findings: ``python bench/explain.py`` (about 1 to 3 minutes on 2 CPU cores).

Speed, on the CPU, in one process, on the same image, in interleaved rounds (each round runs every case once,
in turn), medians; for the shipped demo model and sge_resnet50 at 224 with random weights (its SGE weights
randomised so gates are not flat):

- GradCAM (as users run it): pytorch-grad-cam's GradCAM on the last residual block of a copy whose
  parameters require grad (bench/run.py's reference case);
- GradCAM (frozen): the same on the loaded model itself (parameters frozen), the input requiring grad:
  the cheapest way to run the library alone on a loaded model;
- CAM + contributions: ``explain(..., ablation=False)``: the CAM and every SGE group's contribution, from
  the same forward and backward pass (target <= 1.2x GradCAM);
- explain (all ablations): the whole ``explain`` request, with one ablation per SGE layer (target <= 4x).

Findings on the demo model's six example scenes (assets/scene_0*.png with their item masks): does a group
whose gate tracks the item (gate-vs-mask ROC-AUC) carry the class (contribution)? Spearman correlation
of AUC and contribution per layer, the ablation drops per layer, the CAM's own AUC against the mask, and
the mean gate-vs-CAM correlation. Results go to bench/EXPLAIN.md (``--out`` to change).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np
import torch
from PIL import Image
from run import demo_model, gradcam_case, interleaved, machine, resnet50, test_image  # bench/run.py's helpers
from scipy.stats import spearmanr

from sge_viz.capture.preprocess import center_crop_view, prepare
from sge_viz.explain import explain
from sge_viz.io.images import open_image
from sge_viz.io.masks import mask_for
from sge_viz.metrics.localisation import gate_mask_auc, roc_auc

TARGETS = {"CAM + contributions": 1.2, "explain (all ablations)": 4.0}
BASELINES = ("GradCAM (as users run it)", "GradCAM (frozen)")


def frozen_gradcam_case(loaded, x: torch.Tensor):
    from pytorch_grad_cam import GradCAM

    model = loaded.model
    target = [getattr(model, f"layer{model.num_stages}")[-1]]

    def run():
        with GradCAM(model=model, target_layers=target) as cam:
            return cam(input_tensor=x.clone().requires_grad_(True), targets=None)
    return run


def bench_model(loaded, pil: Image.Image, rounds: int) -> dict:
    x, _ = prepare(pil, loaded.config)
    x = x.to(loaded.device)
    cases = {
        BASELINES[0]: gradcam_case(loaded.model, x),
        BASELINES[1]: frozen_gradcam_case(loaded, x),
        "CAM + contributions": lambda: explain(loaded, pil, ablation=False),
        "explain (all ablations)": lambda: explain(loaded, pil),
    }
    t = interleaved(cases, rounds, warmup=1)
    return {name: t.median(name) for name in cases}


def log_odds(p: float) -> float:
    p = min(max(p, 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def findings(loaded) -> tuple[list[str], dict]:
    scenes = sorted(p for p in (ROOT / "assets").glob("scene_0*.png") if not p.stem.endswith("_mask"))
    config = loaded.config
    per_layer: dict[str, dict[str, list]] = {}
    cam_aucs, rows = [], []
    for path in scenes:
        pil = open_image(path)
        ev = explain(loaded, pil)
        mask_img = Image.fromarray(mask_for(path).astype(np.uint8) * 255, "L")
        mask = center_crop_view(mask_img.convert("RGB"), config.resize_size, config.input_size)[..., 0] >= 128
        cam_auc = float(roc_auc(ev.cam.reshape(1, -1), mask.ravel())[0])
        cam_aucs.append(cam_auc)
        rows.append(f"| {path.name} | {ev.target.label} | {ev.target.probability:.3f} | {cam_auc:.3f} |")
        for layer in ev.layers:
            auc = gate_mask_auc(ev.gates[layer], mask)
            d = per_layer.setdefault(layer, {"auc": [], "contribution": [], "rho": [], "drop": [], "r": [],
                                             "top": [], "odds": []})
            contribution = ev.contributions[layer]
            d["auc"].append(auc)
            d["contribution"].append(contribution)
            d["rho"].append(spearmanr(auc, contribution).statistic)
            d["drop"].append(ev.target.probability - ev.ablation[layer])
            d["odds"].append(log_odds(ev.target.probability) - log_odds(ev.ablation[layer]))
            d["r"].append(float(np.nanmean(ev.cam_correlation(layer))))
            d["top"].append(int(np.argmax(auc)) in ev.ranked(layer)[:2])
    lines = ["| scene | top-1 (target) | p | Grad-CAM vs item mask AUC |", "|---|---|---|---|", *rows, "",
             "| SGE layer | group AUC mean (max) | Spearman(AUC, contribution), pooled | mean per-scene Spearman | "
             "best-AUC group in top-2 contributors | mean ablation drop in p (max) | mean drop in log-odds | "
             "mean gate-vs-CAM r |",
             "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for layer, d in per_layer.items():
        pooled = spearmanr(np.concatenate(d["auc"]), np.concatenate(d["contribution"])).statistic
        mean_rho = float(np.nanmean(d["rho"]))
        drops = np.array(d["drop"])
        summary[layer] = dict(pooled=pooled, mean_rho=mean_rho, drop=float(drops.mean()), max_drop=float(drops.max()))
        aucs = np.concatenate(d["auc"])
        lines.append(f"| {layer} | {np.nanmean(aucs):.2f} ({np.nanmax(aucs):.2f}) | {pooled:+.2f} | {mean_rho:+.2f} | "
                     f"{sum(d['top'])} of {len(d['top'])} | {drops.mean():+.4f} ({drops.max():+.4f}) | "
                     f"{np.mean(d['odds']):+.2f} | {np.mean(d['r']):+.2f} |")
    summary["cam_auc"] = float(np.mean(cam_aucs))
    return lines, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds for sge_resnet50 (default 5; "
                                                               "the demo model gets 4x as many)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own; 1 gives steadier numbers on a busy machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "EXPLAIN.md", help="results file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    pil = test_image()
    sections, checks = [], []
    for (loaded, note), rounds in ((demo_model("cpu"), 4 * args.rounds), (resnet50("cpu"), args.rounds)):
        med = bench_model(loaded, pil, rounds)
        print(f"{note}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in med.items()), flush=True)
        sections += [f"### {note}, {loaded.config.input_size}x{loaded.config.input_size}, batch 1, {rounds} rounds", "",
                     "| case | median | / GradCAM (as users run it) | / GradCAM (frozen) |", "|---|---|---|---|"]
        for name, value in med.items():
            sections.append(f"| {name} | {value * 1000:.1f} ms | {value / med[BASELINES[0]]:.2f}x | "
                            f"{value / med[BASELINES[1]]:.2f}x |")
        sections.append("")
        for case, limit in TARGETS.items():
            for base in BASELINES:
                ratio = med[case] / med[base]
                checks.append((note, case, base, limit, ratio))
    demo, _ = demo_model("cpu")
    finding_lines, summary = findings(demo)
    elapsed = time.perf_counter() - start

    mach = machine()
    lines = [
        "# Class evidence: speed and findings", "",
        f"`python bench/explain.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(" `", "`")
        + f" on {datetime.date.today().isoformat()}, {elapsed:.0f} s in all. Machine: "
        + ", ".join(f"{k} {v}" for k, v in mach.items()) + ". CPU; medians of interleaved rounds in one process, "
        "so only ratios within this run are compared.", "",
        "## Speed against pytorch-grad-cam's GradCAM alone, same image", "",
        "| model | case | target | vs GradCAM | ratio | met |", "|---|---|---|---|---|---|",
    ]
    for note, case, base, limit, ratio in checks:
        lines.append(f"| {note} | {case} | <= {limit}x | {base} | {ratio:.2f}x | {'yes' if ratio <= limit else 'NO'} |")
    lines += ["", *sections,
              "## Findings on the demo model's six example scenes (target = the top-1 class)", "",
              "AUC: ROC-AUC of a group's gate map (upsampled) against the item mask, 0.5 = chance, 1 = the gate is "
              "higher on every item pixel than on every background pixel. Contribution: sum over the group's "
              "channels and positions of dlogit/dy * y (logit units). Ablation drop: p(target) minus p(target) with "
              "that layer's gate replaced by its spatial mean per group (> 0: SGE's spatial pattern helps the "
              "class); the log-odds drop log(p/(1-p)) shows the same where p is near 1. Pooled Spearman: over all "
              "6 scenes x 8 groups of the layer.", "",
              *finding_lines, "",
              f"Mean Grad-CAM vs item mask AUC over the six scenes: {summary['cam_auc']:.3f}.", ""]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
