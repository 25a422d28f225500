"""Faithfulness: speed rows and the findings on the default model. ``python bench/faithfulness.py``.

Speed (CPU, one process, interleaved rounds, medians; the default model at 64 and sge_resnet50 at 224
with random weights, its SGE weights randomised): against one bare forward (batch 1) of the same rounds,

- one map's deletion + insertion (``curves_for_orders``, 5% steps: 40 images, batched) — target <= 15 forwards;
- the page's panel for one image: ``explain(ablation=False)`` + the curves of the focused group, the layer's mean
  gate and Grad-CAM, the random band cached — target <= 60 forwards;
- dissect of the default model's example images with ``faithfulness`` (5% and 25% steps) against without,
  per image — target <= 3x.

Findings (``--scenes N``, default 200): held-out randomised scenes (the test split, the evaluation seed) that
the default model (sge_resnet_demo_scenes) gets right, and ``--wrong M`` (default 60) it gets wrong, explained for the predicted class.
Per scene, deletion and insertion (Gaussian blur, sigma = 1/8 of the side, 5% steps) of: every SGE layer's mean
gate and its top-contribution group's gate, Grad-CAM, the item mask and 5 random orders. Reported: mean +- SE of
the AUCs, the share of scenes per verdict for every layer's mean gate (the band: random orders on the model's
example scenes, as the tool computes it), and the share of scenes with a positive gap per rule. Needs the
Fashion-MNIST data (Debian's dataset-fashion-mnist). Results go to bench/FAITHFULNESS.md (``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from run import interleaved, machine, resnet50, test_image  # noqa: E402  bench/run.py's helpers

from sge_viz.capture.preprocess import center_crop_view, normalise  # noqa: E402
from sge_viz.explain import explain  # noqa: E402
from sge_viz.explain.faithfulness import (  # noqa: E402
    VERDICTS,
    Removal,
    curves_for_orders,
    evidence_faithfulness,
    example_band,
    pixel_order,
    verdict,
)
from sge_viz.models import create_model  # noqa: E402

TARGETS = {"one map (deletion + insertion)": 15, "page panel (3 maps, band cached)": 60}
RANDOM_SEEDS = 5


def speed(loaded, label: str, rounds: int) -> list[str]:
    """Rows: case, median, in forwards, target."""
    config = loaded.config
    view = center_crop_view(test_image(), config.resize_size, config.input_size)
    x = normalise(view, config).unsqueeze(0).to(loaded.device)
    evidence = explain(loaded, view, ablation=False)
    s = config.input_size
    order = {"mean gate": pixel_order(evidence.gates[evidence.layers[-1]].mean(0), s, s)}
    band = example_band(loaded)

    def forward():
        with torch.inference_mode():
            return loaded.model(x)

    cases = {
        "bare forward": forward,
        "one map (deletion + insertion)": lambda: curves_for_orders(loaded, view, evidence.target.index, order),
        "page panel (3 maps, band cached)": lambda: evidence_faithfulness(
            loaded, explain(loaded, view, ablation=False), band=band),
    }
    t = interleaved(cases, rounds, warmup=1)
    base = t.median("bare forward")
    rows = [f"### {label}, {s}x{s}, {rounds} rounds", "",
            "| case | median | in bare forwards | target | met |", "|---|---|---|---|---|"]
    for case in cases:
        ratio = t.median(case) / base
        target = TARGETS.get(case)
        met = "" if target is None else ("yes" if ratio <= target else "no")
        rows.append(f"| {case} | {t.median(case) * 1000:.1f} ms | {ratio:.1f} | "
                    f"{'' if target is None else f'<= {target}'} | {met} |")
    return rows + [""]


def dissect_rows(loaded, rounds: int) -> list[str]:
    """dissect (``run_local``, pictures kept) of the model's example images with and without faithfulness, per
    image; target: with it <= 3x without."""
    from sge_viz.dissect.engine import run_local
    from sge_viz.io.examples import known_examples
    from sge_viz.io.inputs import collect

    items = collect([str(p) for p in known_examples(loaded.config)]).items
    cases = {"dissect": lambda: run_local(loaded, items, 6, batch_size=8),
             "dissect --faithfulness (5% steps)": lambda: run_local(loaded, items, 6, batch_size=8,
                                                                    faithfulness=Removal()),
             "dissect --faithfulness --removal-step 0.25": lambda: run_local(loaded, items, 6, batch_size=8,
                                                                            faithfulness=Removal(step=0.25))}
    t = interleaved(cases, rounds, warmup=1)
    base = t.median("dissect")
    rows = [f"### dissect of the {len(items)} example images, {loaded.name}, {rounds} rounds", "",
            "| case | per image | / dissect | target | met |", "|---|---|---|---|---|"]
    for case in cases:
        ratio = t.median(case) / base
        target = "" if case == "dissect" else "<= 3"
        met = "" if case == "dissect" else ("yes" if ratio <= 3 else "no")
        rows.append(f"| {case} | {t.median(case) / len(items) * 1000:.1f} ms | {ratio:.1f}x | {target} | {met} |")
    return rows + [""]


def scenes(loaded, right: int, wrong: int):
    """(view, mask, label, predicted) of held-out scenes: ``right`` the model gets right, ``wrong`` it gets wrong."""
    from training.data import view as scene_view
    from training.evaluate import EVAL_SEED, mask_view
    from training.train import held_out_scenes

    size = loaded.config.input_size
    dataset = held_out_scenes("wild", EVAL_SEED, 5000)
    got = {True: [], False: []}
    for i in range(len(dataset)):
        if len(got[True]) >= right and len(got[False]) >= wrong:
            break
        sample = dataset[i]
        v = scene_view(sample.image, size)
        with torch.inference_mode():
            predicted = int(loaded.model(normalise(v, loaded.config).unsqueeze(0)).argmax())
        ok = predicted == sample.label
        if len(got[ok]) < (right if ok else wrong):
            got[ok].append((v, mask_view(sample.item_mask, size), sample.label, predicted))
    return got[True], got[False]


def measure_scenes(loaded, items, band) -> dict:
    """Per map name, the per-scene deletion AUCs, insertion AUCs and gaps; per layer the verdicts."""
    out: dict[str, dict[str, list[float]]] = {}
    verdicts: dict[str, list[str]] = {}
    s = loaded.config.input_size
    for n, (v, mask, _label, _predicted) in enumerate(items):
        ev = explain(loaded, v, ablation=False)
        orders = {}
        for layer in ev.layers:
            orders[f"{layer} mean gate"] = pixel_order(ev.gates[layer].mean(0), s, s)
            orders[f"{layer} top-contribution group"] = pixel_order(ev.gates[layer][ev.ranked(layer)[0]], s, s)
        orders["Grad-CAM"] = pixel_order(ev.cam, s, s)
        orders["mask"] = pixel_order(mask.astype(np.float32), s, s)
        for seed in range(RANDOM_SEEDS):
            orders[f"random {seed}"] = np.random.default_rng(1000 + seed).permutation(s * s)
        curves, _ = curves_for_orders(loaded, v, ev.target.index, orders)
        random = [curves.pop(f"random {seed}") for seed in range(RANDOM_SEEDS)]
        for name, c in curves.items():
            row = out.setdefault(name, {"deletion": [], "insertion": [], "gap": []})
            row["deletion"].append(c.deletion_auc)
            row["insertion"].append(c.insertion_auc)
            row["gap"].append(c.gap)
        row = out.setdefault("random order (5 seeds)", {"deletion": [], "insertion": [], "gap": []})
        row["deletion"].append(float(np.mean([c.deletion_auc for c in random])))
        row["insertion"].append(float(np.mean([c.insertion_auc for c in random])))
        row["gap"].append(float(np.mean([c.gap for c in random])))
        cam_gap = curves["Grad-CAM"].gap
        for name, c in curves.items():
            verdicts.setdefault(name, []).append(verdict(c.gap, band, cam_gap))
        if (n + 1) % 25 == 0:
            print(f"  {n + 1} / {len(items)} scenes", file=sys.stderr, flush=True)
    return {"auc": out, "verdicts": verdicts, "layers": ev.layers}


def _ms(values) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} +- {v.std(ddof=1) / np.sqrt(len(v)):.3f}"


def findings_tables(result: dict, title: str) -> list[str]:
    auc, verdicts, layers = result["auc"], result["verdicts"], result["layers"]
    n = len(auc["Grad-CAM"]["gap"])
    rows = [f"### {title} ({n} scenes)", "",
            "| map | deletion AUC (lower = better) | insertion AUC (higher = better) | gap | positive gap |",
            "|---|---|---|---|---|"]
    for name, row in auc.items():
        positive = float(np.mean(np.asarray(row["gap"]) > 0))
        rows.append(f"| {name} | {_ms(row['deletion'])} | {_ms(row['insertion'])} | {_ms(row['gap'])} | "
                    f"{positive:.0%} |")
    rows += ["", "Share of scenes per verdict:", "",
             "| map | " + " | ".join(VERDICTS) + " |", "|---|" + "---|" * len(VERDICTS)]
    for name, said in verdicts.items():
        rows.append(f"| {name} | " + " | ".join(f"{said.count(v) / len(said):.0%}" for v in VERDICTS) + " |")
    rows += ["", "Rule for the page's default focused map: share of scenes with a positive gap, per layer:", "",
             "| layer | mean gate | top-contribution group | best of the two | >= 90% in this layer |",
             "|---|---|---|---|---|"]
    for layer in layers:
        mean = np.asarray(auc[f"{layer} mean gate"]["gap"]) > 0
        top = np.asarray(auc[f"{layer} top-contribution group"]["gap"]) > 0
        best = max(mean.mean(), top.mean())
        rows.append(f"| {layer} | {mean.mean():.0%} | {top.mean():.0%} | {best:.0%} | "
                    f"{'yes' if best >= 0.9 else 'no'} |")
    return rows + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timed rounds (default 10; "
                                                               "sge_resnet50 runs a third of them, at least 3)")
    parser.add_argument("--scenes", type=int, default=200, help="held-out scenes the model gets right")
    parser.add_argument("--wrong", type=int, default=60, help="held-out scenes the model gets wrong")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-findings", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "FAITHFULNESS.md", help="results file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    lines = []
    if not args.skip_speed:
        default = create_model(device="cpu")
        lines += ["## Speed, in bare forwards of the same rounds", ""] + speed(default, default.name, args.rounds)
        big, label = resnet50("cpu")
        lines += speed(big, label, max(3, args.rounds // 3))
        lines += dissect_rows(default, max(3, args.rounds // 3))
    if not args.skip_findings:
        loaded = create_model(device="cpu")  # the default model, sge_resnet_demo_scenes
        label = loaded.name
        band = example_band(loaded, Removal())
        right, wrong = scenes(loaded, args.scenes, args.wrong)
        lines += ["## Findings on the default model", "",
                  f"{label}; {Removal().describe()}; the random band of the tool (random orders on the model's "
                  f"example scenes): gap {band.mean:+.3f}, {band.low:+.3f} .. {band.high:+.3f}.", ""]
        print(f"findings: {len(right)} right, {len(wrong)} wrong scenes", file=sys.stderr, flush=True)
        lines += findings_tables(measure_scenes(loaded, right, band), "Scenes the model gets right")
        if wrong:
            lines += findings_tables(measure_scenes(loaded, wrong, band),
                                     "Scenes the model gets wrong (explained for the predicted class)")
    seconds = time.time() - start
    described = ", ".join(f"{k} {v}" for k, v in machine().items())
    head = ["# Faithfulness: speed and findings", "",
            f"`python bench/faithfulness.py {' '.join(argv or sys.argv[1:])}` on {datetime.date.today()}, "
            f"{seconds:.0f} s in all. Machine: {described}.", ""]
    args.out.write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    print("\n".join(head + lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
