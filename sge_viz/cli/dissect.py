"""``sge-viz dissect INPUT... (--checkpoint PATH | --model NAME) --out DIR [--top-k K] [--batch-size B]
[--workers N] [--device D] [--engine local|ray] [--resume] [--layers NAME...] [--no-pictures]
[--skip-out-of-domain] [--json]``.

What each SGE group does across a set of images: summary.json, the paper's Figs. 2-4, one picture per
group and index.html in DIR (see ``sge_viz.dissect.report``). INPUT: image files, folders (walked
recursively) or .zip archives (read in place). Unreadable inputs are skipped with their reason (listed
in summary.json) and the run goes on. Every image gets the model's out-of-domain verdict (summary.json's
"out_of_domain"; out-of-domain images are marked in the pictures, or left out with --skip-out-of-domain;
a model without a detector says it gives none). A shipped example scene gets the model's answer beside its
true class (summary.json's "true_classes", the report and the console). Exit status 0 when at least one
image was analysed, 1 when none could be (summary.json is still written), 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import SGEVizError
from ..flags import source_from_args
from .common import (
    UsageError,
    add_faithfulness_args,
    add_model_args,
    count_of,
    emit_json,
    load_model,
    non_negative_int,
    positive_int,
    random_band,
    removal_from_args,
    say_error,
)

SAVE_SECONDS = 30.0  # by default the resumable state (numbers and pictures) is saved at most this often


def register(sub) -> None:
    p = sub.add_parser("dissect", help="what each SGE group means across many images (summary, Figs. 2-4, report)")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image files, folders (recursive) or .zip archives")
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--top-k", type=positive_int, default=9, metavar="K", help="top images kept per group (default 9)")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="B", help="images per forward (default 8)")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="image-reading worker processes (local engine; default up to 4 for many images), or Ray "
                        "actors (ray engine; default one per GPU, else one per CPU)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (this process, resumable) or ray (Ray Data over actors; $RAY_ADDRESS for a cluster)")
    p.add_argument("--resume", action="store_true", help="continue a killed run from its saved partials in DIR")
    p.add_argument("--layers", nargs="+", metavar="NAME", default=None, help="only these SGE layers (default all)")
    p.add_argument("--half", action="store_true", help="half precision on CUDA (ignored elsewhere)")
    p.add_argument("--no-pictures", action="store_true", help="write summary.json and index.html only")
    p.add_argument("--skip-out-of-domain", action="store_true",
                   help="leave out the images the model's out-of-domain detector rejects (default: keep and mark "
                        "them); needs a model with a detector")
    p.add_argument("--save-every", type=positive_int, default=None, metavar="N",
                   help="save the running partials every N batches (default: every 10 batches, at most once "
                        f"every {SAVE_SECONDS:g} s)")
    add_faithfulness_args(p, judged="every SGE layer's mean gate, each group of the last SGE layer and Grad-CAM on "
                                    "every image (about 40 forwards per map at 5%% steps: --removal-step 0.25 "
                                    "costs a fifth)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..dissect.engine import STATE_FILE, run_local, run_ray
    from ..dissect.report import write_report
    from ..io.examples import item_true_classes
    from ..io.feed import default_workers
    from ..io.inputs import collect
    from ..models.factory import LoadedModel

    out = Path(args.out)
    _check_args(args)
    removal = removal_from_args(args) if args.faithfulness else None
    found = collect(args.inputs)
    loaded: LoadedModel = load_model(args, half=args.half)
    _check_model(args, loaded, removal)
    band = random_band(loaded, removal, args.band_images) if removal is not None else None
    out.mkdir(parents=True, exist_ok=True)
    items = found.items
    truths = item_true_classes(items)
    progress = tqdm(total=len(items), unit="image", file=sys.stderr, disable=None, smoothing=0.1)
    started = time.perf_counter()
    try:
        if args.engine == "local":
            workers = args.workers if args.workers is not None else default_workers(len(items))
            partial = run_local(loaded, items, args.top_k, args.batch_size, workers, args.layers,
                                state_path=out / STATE_FILE, resume=args.resume,
                                save_every=args.save_every or 10,
                                save_interval=SAVE_SECONDS if args.save_every is None else 0.0,
                                progress=progress.update, pictures=not args.no_pictures,
                                skip_out_of_domain=args.skip_out_of_domain, truths=truths, faithfulness=removal)
        else:
            partial = run_ray(source_from_args(args, half=args.half), items, args.top_k, args.batch_size,
                              args.workers, args.layers, progress=progress.update, pictures=not args.no_pictures,
                              skip_out_of_domain=args.skip_out_of_domain, truths=truths, faithfulness=removal)
    finally:
        progress.close()
    passed = time.perf_counter() - started  # the pass: reading, the forwards, reductions, pictures kept, saves
    partial.skipped = sorted(found.skipped + partial.skipped, key=lambda s: (s["path"], s["reason"]))
    for s in partial.skipped:
        print(f"skipped: {s['path']}: {s['reason']}", file=sys.stderr)
    summary = write_report(out, partial, loaded, items, pictures=not args.no_pictures, batch_size=args.batch_size,
                           left_out=args.skip_out_of_domain, faithfulness=removal, band=band)
    if args.engine == "local":
        (out / STATE_FILE).unlink(missing_ok=True)  # the report holds everything now; a killed run keeps it
    drawn = time.perf_counter() - started - passed
    _report(args, out, summary, len(items), passed, drawn)
    if not summary["images"]:
        say_error(f"none of the {count_of(len(items), 'image')} could be read (reasons above and in "
                  f"{out / 'summary.json'})")
        return 1
    return 0


def _check_args(args: argparse.Namespace) -> None:
    """UsageError / SGEVizError for flags that cannot work together and inputs that do not exist."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if args.engine == "ray" and args.resume:
        raise UsageError("--resume works with --engine local (a Ray run re-runs failed tasks itself)")
    for raw in args.inputs:
        if not Path(raw).exists():
            raise SGEVizError(f"{raw} does not exist: give image files, folders of images or .zip archives.")


def _check_model(args: argparse.Namespace, loaded, removal) -> None:
    """UsageError for flags the loaded model cannot serve (no class scores, unknown layers, no detector)."""
    from ..capture.analysis import sge_layer_shapes
    from ..dissect.reduce import select_layers

    if removal is not None and not loaded.config.classifies:
        raise UsageError(f"--faithfulness needs class scores, and {loaded.name} gives none (gates only)")
    if args.layers:
        try:
            select_layers([s["name"] for s in sge_layer_shapes(loaded)], args.layers)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.skip_out_of_domain and getattr(loaded, "ood", None) is None:
        raise UsageError(f"--skip-out-of-domain: model {loaded.name} carries no out-of-domain detector, so no "
                         "image has a verdict; leave the option out (or use a model with one)")


def _report(args: argparse.Namespace, out: Path, summary: dict, images: int, passed: float, drawn: float) -> None:
    """What the run over ``images`` inputs found, on the console (``--json``: one JSON line)."""
    ood = summary["out_of_domain"]
    if args.json:
        emit_json({"out": str(out), "images": summary["images"], "skipped": summary["skipped"],
                   "out_of_domain": ood["count"] if ood["detector"] else None,
                   "true_classes": {k: summary["true_classes"][k] for k in ("count", "right")},
                   "seconds": {"pass": round(passed, 3), "report": round(drawn, 3)}})
    else:
        print(f"{count_of(summary['images'], 'image')} dissected, {len(summary['skipped'])} skipped -> "
              f"{out / 'index.html'}")
        print(f"time: {_seconds(passed)} s for the pass over the images ({images / max(passed, 1e-9):.1f} "
              f"images/s), {_seconds(drawn)} s for the report")
        if ood["detector"] is None:
            print("out-of-domain verdict: none (this model carries no out-of-domain detector)")
        else:
            print(f"out-of-domain verdict: {ood['count']} of {count_of(len(ood['images']), 'image')} out of domain"
                  + (" (left out)" if ood["left_out"] else " (marked in the pictures; --skip-out-of-domain leaves "
                                                          "them out)" if ood["count"] else ""))
        faith = summary.get("faithfulness")
        if faith and faith.get("images"):
            best = ", ".join(f"{g}" for g in faith["ranking"][:3])
            print("faithfulness: mean gap (insertion - deletion AUC) per layer's mean gate: "
                  + ", ".join(f"{name} {r['mean_gap']:+.2f}" for name, r in faith["layers"].items())
                  + f"; Grad-CAM {faith['cam']['mean_gap']:+.2f}; {faith['group_layer']} groups by gap: {best}, ...")
        known = summary["true_classes"]
        if known["count"]:
            print(f"true class: right on {known['right']} of {count_of(known['count'], 'shipped example scene')} "
                  "(the others' true classes are not known)")


def _seconds(value: float) -> str:
    """Seconds to print: one decimal from 1 s up, two significant digits below (a small set takes ~0.05 s)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"
