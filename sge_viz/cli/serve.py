"""``sge-viz serve [--host H] [--port N] [--share] [--model NAME] [--checkpoint PATH] [--device D]
[--random-weights NAME]``: the web app, with the same flags as ``python app.py``."""
from __future__ import annotations

import argparse

from ..app.server import add_serve_args


def register(sub) -> None:
    add_serve_args(sub.add_parser("serve", help="start the web app (same flags as python app.py)"))


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 2 when the app cannot start (bad checkpoint, unknown model, ...)."""
    from ..app.server import serve

    return serve(args)
