"""``sge-viz sanity [IMAGE_OR_FOLDER...] [--checkpoint PATH | --model NAME] [--out DIR] [--seed N] [--json]``.

The model-randomisation sanity check and the class sensitivity of the gates (``sge_viz.explain.sanity``), on the
given images or, without any, on the model's own example images. Prints per SGE layer the Spearman and SSIM
between the trained and the randomised mean gate and what follows in words; ``--out DIR`` writes sanity.json
(every step, every image) and sanity.png (Spearman along the cascade).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import UsageError, add_model_args, emit_json, load_model, non_negative_int


def register(sub) -> None:
    p = sub.add_parser("sanity", help="do the gates depend on the trained weights and on the class? "
                                      "(cascading randomisation, class sensitivity)")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="*",
                   help="images to check on (default: the model's example images)")
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", default=None, help="write sanity.json and sanity.png here")
    p.add_argument("--seed", metavar="N", type=non_negative_int, default=0, help="seed of the re-initialisation")
    p.add_argument("--limit", metavar="N", type=non_negative_int, default=16,
                   help="use at most N images (default 16; 0: all)")


def run(args: argparse.Namespace) -> int:
    """Run the check and print (or write) the report."""
    from ..explain.faithfulness import example_views, views_of
    from ..explain.sanity import sanity
    from .analyze import expand_inputs

    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    jobs = expand_inputs(args.inputs) if args.inputs else []
    loaded = load_model(args)
    if jobs:
        views = views_of(loaded, [job.path for job in jobs])
    else:
        views = example_views(loaded, limit=10**6)
        if not views:
            raise UsageError("this model has no example images of its own: give images to check on")
    if args.limit:
        views = views[: args.limit]
    print(f"sanity: {len(views)} images, cascade from the head to the stem ...", file=sys.stderr, flush=True)
    report = sanity(loaded, views, seed=args.seed, progress=lambda line: print(f"  {line}", file=sys.stderr))
    if out is not None:
        write_sanity(report, out)
    if args.json:
        emit_json({"model": loaded.name, "out": str(out) if out else None, **report.to_json()})
        return 0
    print(sanity_table(report))
    for line in report.findings():
        print(f"- {line}")
    if out is not None:
        print(f"-> {out / 'sanity.json'}, {out / 'sanity.png'}")
    return 0


def sanity_table(report) -> str:
    """One line per SGE layer: Spearman / SSIM after its own stage and after every part, SGE kept / redrawn."""
    width = max(len(layer) for layer in report.layers)
    heads = ("own stage, SGE kept", "own stage, redrawn", "all, SGE kept", "all, redrawn")
    keys = ("own_kept", "own_redrawn", "all_kept", "all_redrawn")
    lines = [f"mean gate vs the trained model's, mean over {report.images} images (Spearman / SSIM):",
             f"  {'SGE layer':<{width}}" + "".join(f"  {h:>19}" for h in heads)]
    for r in report.summary():
        cells = (f"{r[k + '_spearman']:+.2f} / {r[k + '_ssim']:.2f}" for k in keys)
        lines.append(f"  {r['layer']:<{width}}" + "".join(f"  {c:>19}" for c in cells))
    sensitivity = report.class_sensitivity
    if sensitivity:
        lines.append("top-1 vs top-2 class (Spearman): " + ", ".join(f"{k} {float(v.mean()):.3f}"
                                                                     for k, v in sensitivity.items()))
    return "\n".join(lines)


def write_sanity(report, out: Path) -> None:
    """sanity.json and sanity.png in ``out``, written whole (``atomic_dir``)."""
    from .. import viz
    from ..explain.figures import sanity_figure
    from ..io.export import atomic_dir
    from ..viz.figures import figure_pixels

    with atomic_dir(out) as tmp:
        (tmp / "sanity.json").write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
        (tmp / "sanity.png").write_bytes(viz.to_png_bytes(figure_pixels(sanity_figure(report))))
