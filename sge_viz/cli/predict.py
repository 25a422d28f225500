"""``sge-viz predict IMAGE [--checkpoint PATH | --model NAME] [--json]``: the top-5 classes of an image."""
from __future__ import annotations

import argparse

from .common import add_model_args, emit_json, load_model, predictions_json


def register(sub) -> None:
    p = sub.add_parser("predict", help="top-5 classes of an image")
    p.add_argument("image", metavar="IMAGE")
    add_model_args(p)


def run(args: argparse.Namespace) -> int:
    """Print the image's top-5 classes with their probabilities."""
    from ..capture.analysis import predict
    from ..io.images import open_image

    loaded = load_model(args)
    predictions = predict(loaded, open_image(args.image), k=5)
    if args.json:
        emit_json({"image": str(args.image), "model": loaded.name, "predictions": predictions_json(predictions)})
        return 0
    print(f"{args.image}  ({loaded.name})")
    for p in predictions:
        print(f"  {p.probability:7.2%}  {p.label}  [{p.index}]")
    return 0
