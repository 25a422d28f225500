"""Start the app: the command-line flags shared by ``python app.py`` and ``sge-viz serve``."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import SGEVizError
from ..flags import add_user_model_args, source_from_args


def add_serve_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The server's flags: --host, --port, --share, --model, --checkpoint, --device, --random-weights."""
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--model", default=None,
                        help="model selected at start: 'demo' (the default, sge_resnet_demo_scenes), a model or "
                             "architecture name or a dropdown label")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file to offer (and select)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--random-weights", action="append", default=[], metavar="NAME",
                        help="also offer an untrained network of this architecture (repeatable)")
    add_user_model_args(parser)
    return parser


def user_models(args: argparse.Namespace) -> list:
    """The model of ``--model-def`` (or ``--trust-pickle``), built from the user's code, or none."""
    if not (getattr(args, "model_def", None) or getattr(args, "trust_pickle", False)):
        return []
    from ..sources import open_model

    # The server's --model names the model to start on and --random-weights adds choices: neither is the
    # user's model.
    loaded = open_model(source_from_args(argparse.Namespace(**{**vars(args), "model": None, "random_weights": False})))
    for note in loaded.notes_with_layout:
        print("note: " + note, file=sys.stderr, flush=True)
    return [loaded]


def serve(args: argparse.Namespace) -> int:
    """Load the default model, build the page and serve until interrupted. 2 when the start-up fails."""
    from .catalogue import ModelService
    from .layout import build_ui, launch

    try:
        models = user_models(args)
        checkpoint = None if models else args.checkpoint  # with --model-def, --checkpoint holds its weights
        service = ModelService(device=args.device, checkpoint=checkpoint, random_weights=args.random_weights,
                               default=args.model, models=models)
        service.get(service.default)  # load the default model before the first visitor arrives
        demo = build_ui(service)
    except SGEVizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    launch(demo, host=args.host, port=args.port, share=args.share)
    return 0


def serve_models(models: list, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
                 prevent_thread_lock: bool = False):
    """Open the app on your own models (``LoadedModel``s from ``wrap_model``), first in its menu, beside
    the shipped ones. Blocks until interrupted unless ``prevent_thread_lock``; returns what Gradio's
    ``launch`` returns."""
    from .catalogue import ModelService
    from .layout import build_ui, launch

    service = ModelService(models=list(models))
    return launch(build_ui(service), host=host, port=port, share=share, prevent_thread_lock=prevent_thread_lock)


def main(argv: list[str] | None = None) -> int:
    """``python app.py [flags]``."""
    parser = argparse.ArgumentParser(description="See where an SGE network looks, group by group.")
    return serve(add_serve_args(parser).parse_args(argv))
