"""SGE attention explorer: a Gradio app over sge_viz.

    python app.py                      # the shipped demo model, http://127.0.0.1:7860
    python app.py --share              # plus a public *.gradio.live link
    python app.py --checkpoint checkpoints/sge_resnet50.pth.tar --device cuda
    python app.py --random-weights sge_resnet50   # an untrained ImageNet network, e.g. for timing
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="See where an SGE network looks, group by group.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also serve through a public Gradio share link")
    parser.add_argument("--model", default=None,
                        help="model selected at start: 'demo', an architecture name or a dropdown label")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint file to offer (and select)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--random-weights", action="append", default=[], metavar="NAME",
                        help="also offer an untrained network of this architecture (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sge_viz.errors import SGEVizError
    from sge_viz.service import ModelService
    from sge_viz.ui import build_ui, launch

    try:
        service = ModelService(device=args.device, checkpoint=args.checkpoint, random_weights=args.random_weights,
                               default=args.model)
        service.get(service.default)  # load the default model before the first visitor arrives
        demo = build_ui(service)
    except SGEVizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    launch(demo, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
