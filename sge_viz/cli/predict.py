"""``sge-viz predict IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] [--json]``: the top-5 classes of
each image and whether it lies inside what the model knows (the out-of-domain verdict).

``--json`` for one image: ``{"image", "model", "predictions": [{"index", "label", "probability"}],
"out_of_domain": {"score", "value", "threshold", "out_of_domain"} | null}`` (null: the model has no
measured signal); for several: ``{"model", "results": [that document without "model", ...], "failed":
[{"image", "error"}]}``. An unreadable image is reported and the others still run (exit status 1).
"""
from __future__ import annotations

import argparse
import sys

from ..errors import SGEVizError
from .common import add_model_args, count_of, emit_json, load_model, positive_int, predictions_json


def register(sub) -> None:
    p = sub.add_parser("predict", help="top-5 classes and the out-of-domain verdict of one or more images")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+",
                   help="image files, or folders of images (their <stem>_mask.png masks left out)")
    add_model_args(p)
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B",
                   help="images per forward pass (default 16)")


def run(args: argparse.Namespace) -> int:
    """Print each image's top-5 classes with their probabilities and its out-of-domain verdict."""
    from ..capture.analysis import analyze_views, require_class_scores
    from ..capture.preprocess import center_crop_view
    from ..domain import verdict_json, verdict_text
    from ..io.images import open_image
    from .analyze import expand_inputs

    jobs = expand_inputs(args.inputs)
    loaded = load_model(args)
    config = loaded.config
    require_class_scores(loaded)
    results, failures = [], []
    for start in range(0, len(jobs), args.batch_size):
        names, views = [], []
        for job in jobs[start:start + args.batch_size]:
            try:
                views.append(center_crop_view(open_image(job.path), config.resize_size, config.input_size))
                names.append(str(job.path))
            except (OSError, SGEVizError) as exc:
                failures.append({"image": str(job.path), "error": str(exc)})
                print(f"error: {job.path}: {' '.join(str(exc).split())}", file=sys.stderr)
        if not views:
            continue
        for name, analysis in zip(names, analyze_views(loaded, views, activations=False)):
            results.append({"image": name, "predictions": predictions_json(analysis.predictions),
                            "out_of_domain": verdict_json(analysis.ood)})
            if not args.json:
                if len(results) == 1:
                    print(f"model: {loaded.name}")
                print(f"{name}\n  {verdict_text(analysis.ood)}")
                for p in analysis.predictions:
                    print(f"  {p.probability:7.2%}  {p.label}  [{p.index}]")
    if args.json:
        if len(jobs) == 1 and results:
            emit_json({"image": results[0]["image"], "model": loaded.name, **results[0]})
        else:
            emit_json({"model": loaded.name, "results": results, "failed": failures})
    if failures:
        if len(jobs) > 1:
            print(f"error: {len(failures)} of {count_of(len(jobs), 'image')} could not be read (see above)",
                  file=sys.stderr)
        return 1
    return 0
