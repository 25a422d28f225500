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
    """--checkpoint | --model, --device, --random-weights, --json."""
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
    """The model the flags name (the default demo model, sge_resnet_demo_scenes, when none), via ``create_model``."""
    from ..models.factory import create_model

    if args.random_weights and args.checkpoint:
        raise UsageError("--random-weights cannot be combined with --checkpoint (the file has weights)")
    if args.random_weights and not args.model:
        raise UsageError("--random-weights needs --model NAME (which architecture to build)")
    return create_model(args.model, args.checkpoint, device=args.device, random_weights=args.random_weights,
                        half=half)


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
