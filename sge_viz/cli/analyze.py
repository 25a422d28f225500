"""``sge-viz analyze IMAGE_OR_FOLDER... [--checkpoint PATH | --model NAME] [--out DIR] [--device D]
[--batch-size N] [--workers N] [--random-weights] [--half] [--no-pictures] [--all-mosaics] [--json]``.

``<stem>_mask.png`` files (white = the object) are not analysed as images: they are the masks of
``<stem>.*``, and give stats.json a ``mask_auc`` per group (a mask of another size is skipped with a note).
A shipped example scene (same file name and content) gets its ``true_class`` in stats.json and the console line.

Writes DIR/<image stem>/ per image (see ``sge_viz.io.export``). A folder appears
only when complete. When an image fails, the others still run; each failure is
reported as it happens and the exit status is 1 at the end. Two inputs with the
same stem get the file suffix appended (photo_jpg, photo_png).
"""
from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SGEVizError
from .common import (
    UsageError,
    add_model_args,
    finish_batch,
    load_model,
    non_negative_int,
    positive_int,
    predictions_json,
)

if TYPE_CHECKING:
    from ..domain import Verdict

DEFAULT_OUT = "sge-viz-out"


def register(sub) -> None:
    p = sub.add_parser("analyze", help="write gates.npz, stats.json and pictures per image")
    p.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+")
    add_model_args(p)
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="images per forward (default 8)")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="image-loading worker processes (default: up to 4 for more than 32 images, else 0)")
    p.add_argument("--half", action="store_true", help="half precision on CUDA (ignored elsewhere)")
    p.add_argument("--no-pictures", action="store_true",
                   help="write only gates.npz and stats.json (no PNGs): the fast path for large folders")
    p.add_argument("--all-mosaics", action="store_true",
                   help="a mosaic PNG for every SGE layer (default: the deepest layer only; each mosaic costs "
                        "about a fifth of a forward pass)")


@dataclass(frozen=True)
class _Job:
    path: Path
    out_name: str


def expand_inputs(inputs: Sequence[str]) -> list[_Job]:
    """Files as given, folders as their images (sorted, not recursive, ``<stem>_mask.png`` masks left out);
    unique output names."""
    from ..io.images import IMAGE_SUFFIXES  # here, not at the top: `sge-viz --help` imports no numpy
    from ..io.masks import is_mask_file

    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(p))
            if not found:
                raise SGEVizError(f"Folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}): give a folder with "
                                  "images.")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise SGEVizError(f"{path} does not exist: give image files or folders of images.")
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


def as_items(jobs: Sequence[_Job]) -> list:
    """The jobs as the feed's ``Item``s (named by their output folder), each with its ``<stem>_mask.png``."""
    from ..io.inputs import Item, mask_file

    return [Item(job.out_name, str(job.path), None, mask_file(job.path)) for job in jobs]


def run(args: argparse.Namespace) -> int:
    """Analyse every input and write one result folder per image; 1 when any image failed."""
    from tqdm import tqdm

    from ..capture.analysis import analyze_views
    from ..domain import verdict_json
    from ..io.examples import file_true_class
    from ..io.export import write_analysis
    from ..io.feed import default_workers as reading_workers
    from ..io.feed import item_loader
    from ..viz import default_workers

    jobs = expand_inputs(args.inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    loaded = load_model(args, half=args.half)
    if args.half and loaded.device.type != "cuda":
        print(f"note: --half only applies on CUDA; running in float32 on {loaded.device_label}", file=sys.stderr)
    workers = args.workers if args.workers is not None else reading_workers(len(jobs))
    loader = item_loader(as_items(jobs), loaded.config, args.batch_size, workers)
    results, failures = [], []
    progress = tqdm(total=len(jobs), unit="image", file=sys.stderr, disable=len(jobs) < 2 or None)
    # Result folders are drawn and written on a few threads while the next batch runs through the
    # network (PNG encoding and numpy release the GIL); reported in input order, as they finish.
    writers = ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="sge-write")
    pending: deque = deque()
    limit = args.batch_size + 2 * default_workers()  # finished analyses waiting to be written, at most

    def collect(block: bool) -> None:
        while pending and (block or pending[0][1].done() or len(pending) > limit):
            job, future, top, ood, true = pending.popleft()
            try:
                folder = future.result()
            except (OSError, SGEVizError) as exc:
                failures.append({"image": str(job.path), "error": f"could not write results: {exc}"})
                progress.write(f"error: {job.path}: could not write results: {exc}", file=sys.stderr)
                progress.update(1)
                continue
            results.append({"image": str(job.path), "folder": str(folder), "predictions": top,
                            "out_of_domain": verdict_json(ood), **({"true_class": true} if true else {})})
            if not args.json:
                progress.write(_console_line(job.path, folder, top, ood, true), file=sys.stdout)
            progress.update(1)

    try:
        for batch in loader:
            failures += _unread(batch, jobs, progress)
            good = [fed for fed in batch if fed.error is None]
            # Group activation sums are only drawn, never exported: skip them when nothing is drawn.
            analyses = analyze_views(loaded, [f.view for f in good], activations=not args.no_pictures) if good else []
            for fed, analysis in zip(good, analyses):
                job = jobs[fed.index]
                analysis.true_class = file_true_class(job.path)
                mosaics = None if args.all_mosaics else analysis.layer_names[-1:]
                pending.append((job, writers.submit(write_analysis, analysis, out / job.out_name, mask=fed.mask,
                                                        pictures=not args.no_pictures, mosaic_layers=mosaics),
                                predictions_json(analysis.predictions), analysis.ood, analysis.true_class))
            collect(block=False)
        collect(block=True)
    finally:
        for _, future, *_ in pending:
            future.cancel()
        writers.shutdown(wait=True)
        progress.close()
    return finish_batch(args, loaded.name, out, jobs, results, failures)


def _unread(batch: list, jobs: Sequence[_Job], progress) -> list[dict]:
    """Say each of the batch's mask notes and read errors as it happens; the failures (``{"image", "error"}``)."""
    failures = []
    for fed in batch:
        if fed.note is not None:
            progress.write(f"note: {jobs[fed.index].path}: {fed.note}", file=sys.stderr)
        if fed.error is not None:
            failures.append({"image": str(jobs[fed.index].path), "error": fed.error})
            progress.write(f"error: {jobs[fed.index].path}: {fed.error}", file=sys.stderr)
            progress.update(1)
    return failures


def _console_line(path: Path, folder: Path, top: list[dict], ood: Verdict | None, true: str | None) -> str:
    """One written image as the console shows it: where it went, the top-1 answer (right or wrong where the true
    class is known) and the out-of-domain flag."""
    answer = f"{top[0]['label']} {top[0]['probability']:.1%}" if top else "gates only"
    if true and top:
        answer += f"; true class: {true}, {'right' if top[0]['label'] == true else 'wrong'}"
    flag = "  [out of domain: the model does not know images like this]" if ood and ood.out_of_domain else ""
    return f"{path} -> {folder}  ({answer}){flag}"
