"""``sge-viz``: inspect checkpoints, classify images, write gate analyses, serve the app.

    sge-viz info [MODEL_OR_CHECKPOINT] [--json]
    sge-viz predict IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] [--json]
    sge-viz analyze IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] [--out DIR] ...
    sge-viz explain IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] --out DIR [--target CLASS]
    sge-viz sanity [IMAGE_OR_FOLDER...] [--checkpoint PATH | --model NAME] [--out DIR]
    sge-viz dissect INPUT... [--checkpoint PATH | --model NAME] --out DIR [--top-k K] [--engine local|ray] ...
    sge-viz serve [--host H] [--port N] [--share] [--model NAME] [--checkpoint PATH] ...
    sge-viz examples [DIR]

Without --checkpoint/--model the shipped default model (sge_resnet_demo_scenes) is
used. This interface is a stable contract:

- Exit status: 0 success; 1 a runtime problem (unreadable checkpoint or image,
  missing weights, ...); 2 a usage problem (bad arguments, input paths that do
  not exist). Every problem is one line ``error: ...`` on stderr.
- ``--json`` prints exactly one JSON document on stdout; progress and errors go to stderr.

One module per command; each has ``register(subparsers)`` and ``run(args) -> exit status``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import SGEVizError
from . import analyze, dissect, examples, explain, info, predict, sanity, serve
from .common import Parser, UsageError, say_error

COMMANDS = {"info": info, "predict": predict, "analyze": analyze, "dissect": dissect, "explain": explain,
            "sanity": sanity, "serve": serve, "examples": examples}


def build_parser() -> argparse.ArgumentParser:
    """The ``sge-viz`` parser with one subcommand per module in COMMANDS."""
    from .. import __version__

    parser = Parser(prog="sge-viz", description="See where Spatial Group-wise Enhance (SGE) networks look.")
    parser.add_argument("--version", action="version", version=f"sge-viz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS.values():
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0, 1 or 2; 130 when interrupted)."""
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command].run(args)
    except UsageError as exc:
        say_error(str(exc))
        return 2
    except SGEVizError as exc:
        say_error(str(exc))
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
