"""What every command shares: the usage error, argument types, model flags and output helpers."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import SGEVizError


class UsageError(SGEVizError):
    """A problem with the command line itself (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports problems as one ``error:`` line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint | --model, --device, --random-weights, --json, and your own model's flags."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (.pth/.pth.tar/.safetensors)")
    which.add_argument("--model", metavar="NAME",
                       help="registered model name (e.g. sge_resnet50; its weights are found by content in "
                            "$SGE_VIZ_CHECKPOINTS, then ./checkpoints); the shipped demo models are "
                            "sge_resnet_demo_scenes (randomised scenes, the default) and sge_resnet_demo (knows "
                            "only its own generator)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--random-weights", action="store_true",
                   help="with --model: use an untrained network instead of weights found on disk")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    add_user_model_args(p)


def add_user_model_args(p: argparse.ArgumentParser, checkpoint: bool = False) -> None:
    """Your own model: --model-def SPEC and how to load, feed and read it (``checkpoint``: also add
    --checkpoint, for parsers that do not have it yet)."""
    g = p.add_argument_group("your own model (runs your code; see README, 'Your own model')")
    g.add_argument("--model-def", metavar="SPEC",
                   help="FILE.py:CALLABLE or package.module:CALLABLE returning your nn.Module; --checkpoint "
                        "then loads its weights strictly")
    if checkpoint:
        g.add_argument("--checkpoint", metavar="PATH", help="weights for --model-def (or a checkpoint file)")
    g.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for the callable, as a JSON object")
    g.add_argument("--strip-prefix", metavar="P", help="load only checkpoint keys starting with P, without it")
    g.add_argument("--trust-pickle", action="store_true",
                   help="--checkpoint is a whole pickled model (torch.save(model)): unpickle it, running its code")
    g.add_argument("--labels", metavar="FILE", help="class names, one a line")
    g.add_argument("--input-size", metavar="N|HxW", help="input size (default 224)")
    g.add_argument("--mean", metavar="R,G,B", type=floats, help="normalisation mean (default ImageNet's)")
    g.add_argument("--std", metavar="R,G,B", type=floats, help="normalisation std (default ImageNet's)")
    g.add_argument("--channels", type=int, choices=(1, 3), help="input channels (1: grayscale; default 3)")
    g.add_argument("--resize", choices=("crop", "full"),
                   help="crop: Resize(size/0.875) + CenterCrop(size) (default); full: the whole image resized")
    g.add_argument("--sge-layers", metavar="PATTERN[,PATTERN]", type=patterns,
                   help="module paths (fnmatch) of SGE layers that detection misses")
    g.add_argument("--cam-layer", metavar="NAME", help="module for Grad-CAM (explain) in a model without ResNet stages")
    g.add_argument("--domain", metavar="TEXT", help="one sentence on what the model knows, shown with its results")


_USER_ONLY = ("model_kwargs", "input_size", "mean", "std", "channels", "resize", "sge_layers", "cam_layer")


def floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None


def patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def model_source(args: argparse.Namespace):
    """The ``ModelSource`` the flags describe."""
    from ..models.sources import InputOptions, ModelSource
    from ..models.usercode import parse_kwargs

    user = bool(getattr(args, "model_def", None) or getattr(args, "trust_pickle", False))
    given = [f"--{k.replace('_', '-')}" for k in _USER_ONLY if getattr(args, k, None) not in (None, (), "")]
    if given and not user:
        raise UsageError(f"{', '.join(given)} apply only to your own model: add --model-def FILE.py:CALLABLE")
    inputs = InputOptions(
        labels=args.labels, input_size=args.input_size or 224, mean=args.mean, std=args.std,
        channels=args.channels or 3, resize=args.resize or "crop", sge_layers=args.sge_layers or (),
        domain=args.domain or "", cam_layer=args.cam_layer or "")
    return ModelSource(name=getattr(args, "model", None), checkpoint=getattr(args, "checkpoint", None),
                       model_def=getattr(args, "model_def", None),
                       model_kwargs=parse_kwargs(getattr(args, "model_kwargs", None)),
                       strip_prefix=getattr(args, "strip_prefix", None),
                       trust_pickle=bool(getattr(args, "trust_pickle", False)),
                       random_weights=bool(getattr(args, "random_weights", False)), inputs=inputs)


def say_notes(loaded) -> None:
    """What the user must know about the model (its layout, layers skipped or not captured), on stderr."""
    for note in loaded.notes_with_layout:
        print("note: " + note, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def emit_json(obj: object) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def say_error(message: str) -> None:
    """One ``error: ...`` line on stderr, whatever the message holds."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def predictions_json(predictions) -> list[dict]:
    return [{"index": p.index, "label": p.label, "probability": p.probability} for p in predictions]


def load_model(args: argparse.Namespace, half: bool = False):
    """The model the flags name (the default model, sge_resnet_demo_scenes, when none), via ``open_model``; its
    notes go to stderr."""
    from ..models.sources import open_model

    if args.random_weights and args.checkpoint:
        raise UsageError("--random-weights cannot be combined with --checkpoint (the file has weights)")
    if args.random_weights and not args.model:
        raise UsageError("--random-weights needs --model NAME (which architecture to build)")
    loaded = open_model(model_source(args), device=args.device, half=half)
    say_notes(loaded)
    return loaded


def finish_batch(args: argparse.Namespace, model_name: str, out, jobs: list, results: list[dict],
                 failures: list[dict]) -> int:
    """The end of a command over many images: the --json document, then exit status 1 when any failed."""
    if args.json:
        emit_json({"model": model_name, "out": str(out), "results": results, "failed": failures})
    if failures:
        print(f"error: {len(failures)} of {len(jobs)} images failed (see above); the others are in {out}",
              file=sys.stderr)
        return 1
    return 0
