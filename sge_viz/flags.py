"""The model flags the CLI and the app share, and the one ``ModelSource`` they describe.

    add_user_model_args(parser)        # --model-def, --labels, --input-size, ... (every command and serve)
    source = source_from_args(args)    # -> ModelSource (with device and half), for open_model or a Ray actor

Building a parser imports no torch (``sge-viz --help`` stays fast): the models room is imported only when
flags become a source.
"""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from .sources import ModelSource


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
    g.add_argument("--gates-only", action="store_true", default=None,
                   help="the model's output is not class scores (an embedding, a feature map): show gates only")


_USER_ONLY = ("model_kwargs", "input_size", "mean", "std", "channels", "resize", "sge_layers", "cam_layer",
              "gates_only")


def floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, e.g. "0.5,0.5,0.5" (an argparse type)."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None


def patterns(text: str) -> tuple[str, ...]:
    """Comma-separated fnmatch patterns, blanks dropped (an argparse type)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def source_from_args(args: argparse.Namespace, half: bool = False) -> ModelSource:
    """The ``ModelSource`` the parsed flags describe (``half``: float16 weights on CUDA).

    Raises UsageError for flags that contradict each other (user-model flags without --model-def,
    --random-weights with a checkpoint or without --model)."""
    from .sources import InputOptions, ModelSource
    from .sources.usercode import parse_kwargs

    user = bool(getattr(args, "model_def", None) or getattr(args, "trust_pickle", False))
    given = [f"--{k.replace('_', '-')}" for k in _USER_ONLY if getattr(args, k, None) not in (None, (), "")]
    if given and not user:
        raise UsageError(f"{', '.join(given)} apply only to your own model: add --model-def FILE.py:CALLABLE")
    random_weights = bool(getattr(args, "random_weights", False))
    if random_weights and getattr(args, "checkpoint", None):
        raise UsageError("--random-weights cannot be combined with --checkpoint (the file has weights)")
    if random_weights and not getattr(args, "model", None):
        raise UsageError("--random-weights needs --model NAME (which architecture to build)")
    inputs = InputOptions(
        labels=getattr(args, "labels", None), input_size=getattr(args, "input_size", None) or 224,
        mean=getattr(args, "mean", None), std=getattr(args, "std", None), channels=getattr(args, "channels", None) or 3,
        resize=getattr(args, "resize", None) or "crop", sge_layers=getattr(args, "sge_layers", None) or (),
        domain=getattr(args, "domain", None) or "", cam_layer=getattr(args, "cam_layer", None) or "",
        gates_only=bool(getattr(args, "gates_only", None)))
    return ModelSource(name=getattr(args, "model", None), checkpoint=getattr(args, "checkpoint", None),
                       model_def=getattr(args, "model_def", None),
                       model_kwargs=parse_kwargs(getattr(args, "model_kwargs", None)),
                       strip_prefix=getattr(args, "strip_prefix", None),
                       trust_pickle=bool(getattr(args, "trust_pickle", False)),
                       random_weights=random_weights, inputs=inputs,
                       device=getattr(args, "device", None), half=half)
