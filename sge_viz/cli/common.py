"""What every command shares: the usage error, argument types, model flags and output helpers."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import SGEVizError, UsageError
from ..flags import add_user_model_args, floats, patterns, source_from_args

__all__ = ["Parser", "UsageError", "add_faithfulness_args", "add_model_args", "add_user_model_args", "count_of",
           "emit_json", "finish_batch", "random_band", "removal_from_args",
           "floats", "load_model", "non_negative_int", "patterns", "positive_int", "predictions_json", "say_error",
           "say_notes"]


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


def count_of(n: int, noun: str) -> str:
    """"1 image", "2 images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    from ..sources import open_model

    loaded = open_model(source_from_args(args, half=half))
    say_notes(loaded)
    return loaded


def finish_batch(args: argparse.Namespace, model_name: str, out, jobs: list, results: list[dict],
                 failures: list[dict]) -> int:
    """The end of a command over many images: the --json document, then exit status 1 when any failed."""
    if args.json:
        emit_json({"model": model_name, "out": str(out), "results": results, "failed": failures})
    if failures:
        rest = (f"the others are in {out}" if len(failures) < len(jobs) else "no results were written")
        print(f"error: {len(failures)} of {count_of(len(jobs), 'image')} failed (see above); {rest}", file=sys.stderr)
        return 1
    return 0


def add_faithfulness_args(p: argparse.ArgumentParser, judged: str) -> None:
    """--faithfulness and its settings (--removal, --removal-step, --blur-sigma), for explain and dissect."""
    f = p.add_argument_group("faithfulness (deletion and insertion curves: does a map point at the evidence?)")
    f.add_argument("--faithfulness", action="store_true",
                   help=f"judge {judged} by deletion and insertion, against random pixel orders on the model's "
                        "example images")
    # The names of explain.faithfulness.REMOVALS, written out: importing it here would load torch for --help.
    f.add_argument("--removal", choices=("blur", "mean"), default="blur",
                   help="what a removed pixel becomes: a Gaussian-blurred copy (default) or the image's mean colour")
    f.add_argument("--removal-step", metavar="F", type=float, default=0.05,
                   help="share of pixels removed per step, in (0, 0.5] (default 0.05: 21 points per curve)")
    f.add_argument("--blur-sigma", metavar="F", type=float, default=1 / 8,
                   help="the blur's sigma as a share of the input side (default 0.125)")
    f.add_argument("--band-images", metavar="IMAGE_OR_FOLDER", nargs="+", default=None,
                   help="compute the random band on these images (e.g. a few of your own domain) instead of the "
                        "model's shipped examples; cached like the default")


def removal_from_args(args: argparse.Namespace):
    """The ``Removal`` the faithfulness flags describe; UsageError for a bad value."""
    from ..explain.faithfulness import Removal

    try:
        return Removal(args.removal, args.blur_sigma, args.removal_step)
    except SGEVizError as exc:
        raise UsageError(str(exc)) from None


def random_band(loaded, removal, images: list[str] | None = None):
    """The random band on ``images`` (files and folders) or else the model's example images (cached), said on
    stderr; None (no verdicts) when the model has no examples and no images were given."""
    from ..explain.faithfulness import cached_band, example_band

    where = "the images of --band-images" if images else "its example images"
    print(f"faithfulness: the random band of this model (random pixel orders on {where}; computed once, then "
          "cached) ...", file=sys.stderr, flush=True)
    if images:
        band = cached_band(loaded, band_views(loaded, images), removal, label="given images")
    else:
        band = example_band(loaded, removal)
    if band is None:
        print("faithfulness: this model has no example images of its own, so there is no random band and no "
              "verdicts (the gaps are written).", file=sys.stderr)
    else:
        print(f"faithfulness: random band gap {band.low:+.3f} .. {band.high:+.3f} (mean {band.mean:+.3f}, "
              f"{band.images} images x {band.seeds} orders)", file=sys.stderr)
    return band


def band_views(loaded, inputs: list[str], limit: int = 8) -> list:
    """Up to ``limit`` images of ``inputs`` (files, folders) cropped to the model's input, for the random band;
    UsageError when there are none."""
    from ..explain.faithfulness import views_of
    from .analyze import expand_inputs

    jobs = expand_inputs(inputs)[:limit]
    if not jobs:
        raise UsageError("--band-images: no images found")
    return views_of(loaded, [job.path for job in jobs])
