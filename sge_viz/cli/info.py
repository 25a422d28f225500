"""``sge-viz info [CHECKPOINT] [--json]``: architecture, parameter count, metadata and SGE layers of a checkpoint
(default: the shipped default model, sge_resnet_demo_scenes)."""
from __future__ import annotations

import argparse

from ..metrics.ood import describe
from .common import emit_json


def register(sub) -> None:
    p = sub.add_parser("info", help="architecture, parameter count and SGE layers of a checkpoint")
    p.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", default=None,
                   help="checkpoint file (default: the shipped default model, sge_resnet_demo_scenes)")
    p.add_argument("--device", default="cpu", help="where to load it (default cpu)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def run(args: argparse.Namespace) -> int:
    """Print what the checkpoint holds; the file is loaded strictly, exactly as the app would load it."""
    from ..capture.analysis import sge_layer_shapes
    from ..models.factory import load_checkpoint
    from ..resources import default_checkpoint

    if args.checkpoint is None:
        args.checkpoint = str(default_checkpoint())
    loaded = load_checkpoint(args.checkpoint, device=args.device)
    config = loaded.config
    layers = sge_layer_shapes(loaded)
    info = {
        "path": str(args.checkpoint), "arch": config.arch, "parameters": loaded.num_parameters,
        "num_classes": config.num_classes, "input_size": config.input_size, "resize_size": config.resize_size,
        "metadata": loaded.metadata, "sge_layers": layers, "domain": config.domain(),
    }
    if args.json:
        emit_json(info)
        return 0
    size = config.input_size
    print(f"checkpoint   {args.checkpoint}")
    print(f"architecture {config.arch}")
    print(f"parameters   {info['parameters']:,}")
    print(f"classes      {config.num_classes}")
    print(f"input        {size}x{size} (resize shorter side to {config.resize_size}, centre crop)")
    domain = info["domain"]
    print(f"knows        {domain['description'] or '(no description in the file)'}")
    print(f"trained on   {domain['training_data'] or '(not stated)'}")
    names = domain["classes"]
    shown = ", ".join(names) if len(names) <= 12 else ", ".join(names[:8]) + f", ... ({len(names)} in all)"
    print(f"class names  {shown}")
    ood = domain["ood"]
    print("out-of-domain " + (f"{ood['score']}: {describe(ood['score'])} > {ood['threshold']:.4g} flags an image"
                              if ood else "no signal measured: nothing warns about images outside its domain"))
    for key, value in info["metadata"].items():
        print(f"{key:<12} {value}")
    print(f"SGE layers   {len(layers)} (gate map size at {size}x{size} input)")
    for layer in layers:
        print(f"  {layer['name']:<16} {layer['groups']:>3} groups  {layer['height']}x{layer['width']}")
    return 0
