"""``sge-viz info [MODEL_OR_CHECKPOINT] [--json]``: what a model is and what it knows, readable.

MODEL_OR_CHECKPOINT: a checkpoint file, or a model name (``sge_resnet_demo``, ``sge_resnet_demo_scenes``,
``sge_resnet50``, ...: the same names as ``--model``); none = the default model. The text names the
model, its architecture, domain, classes, groups per SGE layer, input size, measured accuracy and its
out-of-domain signal; ``--json`` prints everything, the file's whole metadata included, as one document.
"""
from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from .common import add_user_model_args, emit_json

WIDTH = 100  # wrap long descriptions at this many characters
LABEL = 15  # width of the label column
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".tar", ".safetensors", ".bin", ".ckpt")


def register(sub) -> None:
    p = sub.add_parser("info", help="what a model or checkpoint is and knows (readable; --json for machines)")
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT", nargs="?", default=None,
                   help="a checkpoint file or a model name such as sge_resnet_demo_scenes (default: the "
                        "default model)")
    p.add_argument("--device", default="cpu", help="where to load it (default cpu)")
    p.add_argument("--random-weights", action="store_true",
                   help="with a model name: describe an untrained network of it (no weights needed)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    add_user_model_args(p, checkpoint=True)


def _looks_like_file(text: str) -> bool:
    path = Path(text)
    return path.exists() or "/" in text or "\\" in text or text.lower().endswith(CHECKPOINT_SUFFIXES)


def load(what: str | None, device: str, random_weights: bool = False):
    """The model ``what`` names: a checkpoint file (loaded strictly, as the app would) or a model name."""
    from ..models.factory import create_model, load_checkpoint
    from .common import UsageError

    if what is not None and _looks_like_file(what):
        if random_weights:
            raise UsageError("--random-weights describes a model name, not a checkpoint file (it has weights)")
        return load_checkpoint(what, device=device)
    if random_weights and what is None:
        raise UsageError("--random-weights needs a model name (which architecture to build)")
    return create_model(what, device=device, random_weights=random_weights)


def accuracy(metadata: dict[str, str]) -> str | None:
    """The accuracy a file states about itself, in words, or None: the demo models' ``metrics`` (top-1 on
    held-out scenes) or the official training dicts' ``best_acc``/``best_acc1``/``acc`` (percent)."""
    try:
        metrics = json.loads(metadata.get("metrics", "null"))
    except ValueError:
        metrics = None
    if isinstance(metrics, dict) and isinstance(metrics.get("top1"), (int, float)):
        where = f" on {metrics['samples']:,} held-out images" if isinstance(metrics.get("samples"), int) else ""
        split = ", ".join(f"{metrics[k]} {k}" for k in ("split", "scenes") if metrics.get(k))
        split = f" ({split})" if split else ""
        return f"{metrics['top1']:.1%} top-1{where}{split}"
    for key in ("best_acc1", "best_acc", "acc"):
        try:
            value = float(metadata[key])
        except (KeyError, ValueError):
            continue
        return f"{value:.2f}% top-1 (the file's '{key}')"
    return None


def info_dict(loaded, what: str | None) -> dict:
    """The --json document: the checkpoint's facts, its SGE layers and its domain."""
    from ..capture.analysis import sge_layer_shapes

    config = loaded.config
    return {
        "name": loaded.name, "path": loaded.source if what is None or not _looks_like_file(what) else str(what),
        "arch": config.arch, "parameters": loaded.num_parameters, "num_classes": config.num_classes,
        "input_size": config.input_size, "resize_size": config.resize_size, "accuracy": accuracy(loaded.metadata),
        "metadata": loaded.metadata, "sge_layers": sge_layer_shapes(loaded), "domain": config.domain(),
        "task": config.task, "channels": config.channels,
        "notes": loaded.notes_with_layout,
    }


def _line(label: str, text: str) -> str:
    indent = " " * (LABEL + 2)
    return textwrap.fill(text, WIDTH, initial_indent=f"{label:<{LABEL}}  ", subsequent_indent=indent)


def _kept(names: list[str]) -> str:
    """Names joined by ", ", each kept on one line when wrapped (their spaces become "\x1f" until printed)."""
    return ", ".join(n.replace(" ", "\x1f") for n in names)


def summary_text(info: dict) -> str:
    """The readable summary of ``info_dict``: one labelled line (wrapped) per fact, then the layers."""
    from ..domain.detector import describe

    domain, size = info["domain"], info["input_size"]
    size = f"{size}x{size}" if isinstance(size, int) else f"{size[0]}x{size[1]}"
    colour = "grayscale" if info.get("channels") == 1 else "RGB"
    how = (f"shorter side resized to {info['resize_size']}, centre crop" if info["resize_size"]
           else "the whole image resized")
    names = domain["classes"]
    shown = _kept(names) if len(names) <= 12 else _kept(names[:8]) + ", ..."
    ood = domain["ood"]
    layers = info["sge_layers"]
    groups = sorted({layer["groups"] for layer in layers})
    lines = [
        info["name"],
        _line("file", info["path"]),
        _line("architecture", f"{info['arch']}, {info['parameters']:,} parameters, {len(layers)} SGE layers, "
                              f"{' or '.join(map(str, groups)) or 'no'} groups each"),
        _line("input", f"{size} {colour} ({how})"),
        _line("domain", domain["description"] or "(none given: no domain is known for this model)"),
        _line("trained on", domain["training_data"] or "(not stated)"),
        _line("classes", f"{info['num_classes']}: {shown or '(unnamed: class 0, class 1, ...)'}"
              if info.get("task", "classify") == "classify"
              else "none: gates only (the output is not one row of class scores)"),
        _line("accuracy", info["accuracy"] or "(not stated in the file)"),
        _line("out-of-domain", f"{ood['score']}: {describe(ood['score'])}; an image scoring above "
                               f"{ood['threshold']:.4g} is flagged as outside the domain" if ood else
              "no out-of-domain signal for this model: nothing warns about images outside its domain"),
        *[_line("note", note) for note in info.get("notes", [])],
        _line("SGE layers", f"{'groups':>6}  gate map at {size}"),
    ]
    lines += [f"  {layer['name']:<{LABEL}} {layer['groups']:>6}  {layer['height']}x{layer['width']}"
              for layer in layers]
    rest = sorted(k for k in info["metadata"] if k != "arch")
    if rest:
        lines.append(_line("more", f"{', '.join(rest)}: see --json"))
    return "\n".join(lines).replace("\x1f", " ")


def run(args: argparse.Namespace) -> int:
    """Print what the model is and knows; the file is loaded strictly, exactly as the app would load it."""
    if args.model_def or args.trust_pickle:
        from ..flags import source_from_args
        from ..sources import open_model
        from .common import UsageError

        if args.model:
            raise UsageError("with --model-def, give the weights with --checkpoint, not as MODEL_OR_CHECKPOINT")
        loaded = open_model(source_from_args(args))
    else:
        loaded = load(args.model, args.device, args.random_weights)
    info = info_dict(loaded, args.model)
    if args.json:
        emit_json(info)
    else:
        print(summary_text(info))
    return 0
