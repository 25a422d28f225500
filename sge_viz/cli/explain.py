"""``sge-viz explain IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] --out DIR [--target CLASS]
[--device D] [--random-weights] [--json] [--faithfulness [--layer L] [--group G] [--removal blur|mean]
[--removal-step F] [--blur-sigma F] [--road]]``.

Writes DIR/<image stem>/ per image: evidence.json, cam.npy, cam.png, and with ``--faithfulness`` the deletion
and insertion curves in evidence.json and faithfulness.png (see ``sge_viz.explain.files``).
A folder appears only when complete. Inputs are expanded like ``analyze`` (folders give their images,
``<stem>_mask.png`` masks left out). When an image fails the others still run; the exit status is 1 at the end.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SGEVizError
from .analyze import expand_inputs
from .common import (
    UsageError,
    add_faithfulness_args,
    add_model_args,
    finish_batch,
    load_model,
    non_negative_int,
    random_band,
    removal_from_args,
)


def register(sub) -> None:
    p = sub.add_parser("explain", help="Grad-CAM, per-group contributions and per-layer ablations per image")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+")
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (one sub-folder per image)")
    p.add_argument("--target", metavar="CLASS", default=None,
                   help="class index or class name to explain (default: each image's top-1 class)")
    add_faithfulness_args(p, judged="the focused group's gate, the layer's mean gate, Grad-CAM and the item mask "
                                    "(when known)")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="with --faithfulness: SGE layer of the gate maps (default: the last)")
    p.add_argument("--group", metavar="G", type=non_negative_int, default=None,
                   help="with --faithfulness: focused group (default: the group contributing most to the class)")
    p.add_argument("--road", action="store_true",
                   help="with --faithfulness: also ROAD (pytorch-grad-cam: most and least relevant first, 10..90%%)")


def run(args: argparse.Namespace) -> int:
    """Explain every input and write one folder per image; 1 when any image failed."""
    from ..domain import verdict_json, verdict_text
    from ..explain import explain, resolve_target
    from ..explain.faithfulness import evidence_faithfulness
    from ..explain.files import write_evidence
    from ..io.images import open_image

    jobs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    removal = removal_from_args(args)
    loaded = load_model(args)
    try:
        target = resolve_target(loaded.config, args.target)  # a bad --target fails before any image runs
    except SGEVizError as exc:
        raise UsageError(f"--target: {exc}") from None
    band = random_band(loaded, removal, args.band_images) if args.faithfulness else None
    results, failures = [], []
    for job in jobs:
        try:
            image = open_image(job.path)
            evidence = explain(loaded, image, target)
            if args.faithfulness:
                evidence.faithfulness = evidence_faithfulness(
                    loaded, evidence, args.layer, args.group, removal, band, _mask(job.path, image, loaded),
                    args.road)
            folder = write_evidence(evidence, out / job.out_name)
        except (OSError, SGEVizError) as exc:
            failures.append({"image": str(job.path), "error": str(exc)})
            print(f"error: {job.path}: {' '.join(str(exc).split())}", file=sys.stderr)
            continue
        t = evidence.target
        results.append({"image": str(job.path), "folder": str(folder), "target": evidence.to_json()["target"],
                        "out_of_domain": verdict_json(evidence.ood)})
        if evidence.faithfulness is not None:
            results[-1]["faithfulness"] = {name: {"gap": m["gap"], "verdict": m["verdict"]}
                                           for name, m in evidence.faithfulness.to_json()["maps"].items()}
        if not args.json:
            print(f"{job.path} -> {folder}  ({t.label} {t.probability:.1%}, {evidence.seconds * 1000:.0f} ms)\n"
                  f"  {verdict_text(evidence.ood)}")
            if evidence.faithfulness is not None:
                print(faithfulness_table(evidence.faithfulness))
    return finish_batch(args, loaded.name, out, jobs, results, failures)


def _mask(path, image, loaded):
    """The item mask beside the image (``<stem>_mask.png``), cropped like the image; None without one."""
    from ..io.feed import crop_mask
    from ..io.masks import mask_for

    mask = mask_for(path)
    if mask is None:
        return None
    return crop_mask(mask, loaded.config.resize_size, loaded.config.input_size)


def faithfulness_table(result) -> str:
    """The console's lines: one per map with deletion AUC, insertion AUC, gap and verdict."""
    width = max(len(name) for name in result.curves)
    lines = [f"  {'map':<{width}}  deletion  insertion     gap  verdict"]
    for name, c in result.curves.items():
        lines.append(f"  {name:<{width}}  {c.deletion_auc:8.3f}  {c.insertion_auc:9.3f}  {c.gap:+6.3f}  "
                     f"{result.verdicts.get(name, '-')}")
    lines.append(f"  ({result.removal.describe()})")
    return "\n".join(lines)
