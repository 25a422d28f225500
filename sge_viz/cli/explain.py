"""``sge-viz explain IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] --out DIR [--target CLASS]
[--device D] [--random-weights] [--json]``.

Writes DIR/<image stem>/ per image: evidence.json, cam.npy, cam.png (see ``sge_viz.explain.files``).
A folder appears only when complete. Inputs are expanded like ``analyze`` (folders give their images,
``<stem>_mask.png`` masks left out). When an image fails the others still run; the exit status is 1 at the end.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SGEVizError
from .analyze import expand_inputs
from .common import UsageError, add_model_args, finish_batch, load_model


def register(sub) -> None:
    p = sub.add_parser("explain", help="Grad-CAM, per-group contributions and per-layer ablations per image")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+")
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (one sub-folder per image)")
    p.add_argument("--target", metavar="CLASS", default=None,
                   help="class index or class name to explain (default: each image's top-1 class)")


def run(args: argparse.Namespace) -> int:
    """Explain every input and write one folder per image; 1 when any image failed."""
    from ..explain import explain, resolve_target
    from ..explain.files import write_evidence
    from ..io.images import open_image
    from ..viz.verdict import verdict_text

    jobs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    loaded = load_model(args)
    try:
        target = resolve_target(loaded.config, args.target)  # a bad --target fails before any image runs
    except SGEVizError as exc:
        raise UsageError(f"--target: {exc}") from None
    results, failures = [], []
    for job in jobs:
        try:
            evidence = explain(loaded, open_image(job.path), target)
            folder = write_evidence(evidence, out / job.out_name)
        except (OSError, SGEVizError) as exc:
            failures.append({"image": str(job.path), "error": str(exc)})
            print(f"error: {job.path}: {' '.join(str(exc).split())}", file=sys.stderr)
            continue
        t = evidence.target
        results.append({"image": str(job.path), "folder": str(folder), "target": evidence.to_json()["target"],
                        "out_of_domain": evidence.ood})
        if not args.json:
            print(f"{job.path} -> {folder}  ({t.label} {t.probability:.1%}, {evidence.seconds * 1000:.0f} ms)\n"
                  f"  {verdict_text(evidence.ood)}")
    return finish_batch(args, loaded.name, out, jobs, results, failures)
