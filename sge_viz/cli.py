"""``sge-viz``: inspect checkpoints, classify images, and write gate analyses to folders.

    sge-viz info CHECKPOINT [--json]
    sge-viz predict IMAGE [--checkpoint PATH | --model NAME] [--json]
    sge-viz analyze IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] [--out DIR]
                    [--device D] [--batch-size N] [--workers N] [--random-weights] [--half]
                    [--no-pictures] [--json]

Without --checkpoint/--model the shipped demo model is used. This interface is
a stable contract:

- Exit status: 0 success; 1 a runtime problem (unreadable checkpoint or image,
  missing weights, ...); 2 a usage problem (bad arguments, input paths that do
  not exist). Every problem is one line ``error: ...`` on stderr.
- ``--json`` prints exactly one JSON document on stdout; progress and errors go to stderr.
- ``analyze`` writes DIR/<image stem>/ per image (see sge_viz.export). A folder
  appears only when complete. When an image fails, the others still run; each
  failure is reported as it happens and the exit status is 1 at the end.
  Two inputs with the same stem get the file suffix appended (photo_jpg, photo_png).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import SGEVizError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".ppm")
DEFAULT_OUT = "sge-viz-out"


class UsageError(SGEVizError):
    """A problem with the command line itself (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports problems as one ``error:`` line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- argument parsing ------------------------------------------------------------

def _add_model_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (.pth/.pth.tar/.safetensors)")
    which.add_argument("--model", metavar="NAME",
                       help="registered model name (e.g. sge_resnet50; its weights are looked up in checkpoints/)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--random-weights", action="store_true",
                   help="with --model: use an untrained network instead of weights from checkpoints/")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sge-viz", description="See where Spatial Group-wise Enhance (SGE) networks look.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sge-viz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    info = sub.add_parser("info", help="architecture, parameter count and SGE layers of a checkpoint")
    info.add_argument("checkpoint", metavar="CHECKPOINT")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")

    predict = sub.add_parser("predict", help="top-5 classes of an image")
    predict.add_argument("image", metavar="IMAGE")
    _add_model_args(predict)

    analyze = sub.add_parser("analyze", help="write gates.npz, stats.json and pictures per image")
    analyze.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+")
    _add_model_args(analyze)
    analyze.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    analyze.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="images per forward (default 8)")
    analyze.add_argument("--workers", type=_non_negative_int, default=None, metavar="N",
                         help="image-loading worker processes (default: up to 4 for many images, else 0)")
    analyze.add_argument("--half", action="store_true", help="half precision on CUDA (ignored elsewhere)")
    analyze.add_argument("--no-pictures", action="store_true",
                         help="write only gates.npz and stats.json (no PNGs): the fast path for large folders")
    return parser


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


# --- output helpers -------------------------------------------------------------------

def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def _say_error(message: str) -> None:
    # One line, whatever the message holds.
    print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)


def _predictions_json(predictions) -> list[dict]:
    return [{"index": p.index, "label": p.label, "probability": p.probability} for p in predictions]


def _load(args: argparse.Namespace, half: bool = False):
    from .checkpoints import create_model

    if args.random_weights and args.checkpoint:
        raise UsageError("--random-weights cannot be combined with --checkpoint (the file has weights)")
    if args.random_weights and not args.model:
        raise UsageError("--random-weights needs --model NAME (which architecture to build)")
    return create_model(args.model, args.checkpoint, device=args.device, random_weights=args.random_weights,
                        half=half)


# --- info -------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .capture import GateRecorder
    from .checkpoints import build_for, load_strict, read_checkpoint

    path = Path(args.checkpoint)
    contents = read_checkpoint(path)
    model, config = build_for(contents, path)
    load_strict(model, contents.state_dict, path, config.arch)
    model.eval()
    size = config.input_size
    with torch.inference_mode(), GateRecorder(model, activations=False) as recorder:
        model(torch.zeros(1, 3, size, size))
    layers = [{"name": name, "groups": int(cap.gate.shape[1]), "height": int(cap.gate.shape[2]),
               "width": int(cap.gate.shape[3])} for name, cap in recorder.captures.items()]
    info = {
        "path": str(path), "arch": config.arch, "parameters": sum(p.numel() for p in model.parameters()),
        "num_classes": config.num_classes, "input_size": size, "resize_size": config.resize_size,
        "metadata": {k: v for k, v in contents.metadata.items() if not k.startswith("sge_viz.")},
        "sge_layers": layers,
    }
    if args.json:
        _emit_json(info)
        return 0
    print(f"checkpoint   {path}")
    print(f"architecture {config.arch}")
    print(f"parameters   {info['parameters']:,}")
    print(f"classes      {config.num_classes}")
    print(f"input        {size}x{size} (resize shorter side to {config.resize_size}, centre crop)")
    for key, value in info["metadata"].items():
        print(f"{key:<12} {value}")
    print(f"SGE layers   {len(layers)} (gate map size at {size}x{size} input)")
    for layer in layers:
        print(f"  {layer['name']:<16} {layer['groups']:>3} groups  {layer['height']}x{layer['width']}")
    return 0


# --- predict ------------------------------------------------------------------------

def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .analysis import top_k
    from .images import open_image, prepare

    loaded = _load(args)
    image = open_image(args.image)
    x, _ = prepare(image, loaded.config)
    with torch.inference_mode():
        probs = loaded.model(x.to(loaded.device, loaded.dtype)).float().softmax(dim=1)[0].cpu()
    predictions = top_k(probs, loaded.config, 5)
    if args.json:
        _emit_json({"image": str(args.image), "model": loaded.name, "predictions": _predictions_json(predictions)})
        return 0
    print(f"{args.image}  ({loaded.name})")
    for p in predictions:
        print(f"  {p.probability:7.2%}  {p.label}  [{p.index}]")
    return 0


# --- analyze --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    path: Path
    out_name: str


def expand_inputs(inputs: Sequence[str]) -> list[_Job]:
    """Files as given, folders as their images (sorted, not recursive); unique output names."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise UsageError(f"{path} does not exist: give image files or folders of images")
    unique = list(dict.fromkeys(paths))
    stems: dict[str, int] = {}
    for p in unique:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    jobs, taken = [], set()
    for p in unique:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'noext'}"
        base, n = name, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        jobs.append(_Job(p, name))
    return jobs


class ImageViews:
    """Dataset of (index, view or None, error or None): opening and cropping happen in workers."""

    def __init__(self, paths: list[Path], resize_size: int, input_size: int):
        self.paths, self.resize_size, self.input_size = paths, resize_size, input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from .images import center_crop_view, open_image

        try:
            view = center_crop_view(open_image(self.paths[i]), self.resize_size, self.input_size)
            return i, view, None
        except SGEVizError as exc:
            return i, None, str(exc)


def _as_list(batch):
    return batch  # keep views as numpy arrays: analyze_views normalises them itself


def cmd_analyze(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .analysis import analyze_views
    from .export import write_analysis
    from .render import default_workers

    jobs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    loaded = _load(args, half=args.half)
    if args.half and loaded.device.type != "cuda":
        print(f"note: --half only applies on CUDA; running in float32 on {loaded.device_label}", file=sys.stderr)
    workers = args.workers if args.workers is not None else (min(4, os.cpu_count() or 1) if len(jobs) > 8 else 0)
    config = loaded.config
    loader = DataLoader(ImageViews([j.path for j in jobs], config.resize_size, config.input_size),
                        batch_size=args.batch_size, num_workers=workers, collate_fn=_as_list)
    results, failures = [], []
    progress = tqdm(total=len(jobs), unit="image", file=sys.stderr, disable=len(jobs) < 2 or None)
    # Result folders are drawn and written on a few threads while the next batch runs through the
    # network (PNG encoding and numpy release the GIL); reported in input order, as they finish.
    writers = ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="sge-write")
    pending: deque = deque()
    limit = args.batch_size + 2 * default_workers()  # finished analyses waiting to be written, at most

    def collect(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > limit):
            job, future, top = pending.popleft()
            try:
                folder = future.result()
            except (OSError, SGEVizError) as exc:
                failures.append({"image": str(job.path), "error": f"could not write results: {exc}"})
                progress.write(f"error: {job.path}: could not write results: {exc}", file=sys.stderr)
                progress.update(1)
                continue
            results.append({"image": str(job.path), "folder": str(folder), "predictions": top})
            if not args.json:
                best = top[0]
                progress.write(f"{job.path} -> {folder}  ({best['label']} {best['probability']:.1%})",
                               file=sys.stdout)
            progress.update(1)

    try:
        for batch in loader:
            good = [(i, view) for i, view, error in batch if error is None]
            for i, _, error in batch:
                if error is not None:
                    failures.append({"image": str(jobs[i].path), "error": error})
                    progress.write(f"error: {jobs[i].path}: {' '.join(error.split())}", file=sys.stderr)
                    progress.update(1)
            # Group activation sums are only drawn, never exported: skip them when nothing is drawn.
            views = [view for _, view in good]
            analyses = analyze_views(loaded, views, activations=not args.no_pictures) if good else []
            for (i, _), analysis in zip(good, analyses):
                job = jobs[i]
                pending.append((job, writers.submit(write_analysis, analysis, out / job.out_name,
                                                        pictures=not args.no_pictures),
                                _predictions_json(analysis.predictions)))
            collect(block=False)
        collect(block=True)
    finally:
        for _, future, _ in pending:
            future.cancel()
        writers.shutdown(wait=True)
        progress.close()
    if args.json:
        _emit_json({"model": loaded.name, "out": str(out), "results": results, "failed": failures})
    if failures:
        print(f"error: {len(failures)} of {len(jobs)} images failed (see above); the others are in {out}",
              file=sys.stderr)
        return 1
    return 0


# --- entry point -----------------------------------------------------------------------

COMMANDS = {"info": cmd_info, "predict": cmd_predict, "analyze": cmd_analyze}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        _say_error(str(exc))
        return 2
    except SGEVizError as exc:
        _say_error(str(exc))
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
