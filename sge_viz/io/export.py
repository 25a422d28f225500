"""Writing one analysis to files (CLI) or bytes (downloads), never leaving half-written output.

Folder layout written by ``write_analysis``:

    gates.npz            one float32 (G, h, w) array per SGE layer, key = layer name
    stats.json           analysis_stats(): predictions and per-group gate statistics
    mosaic_<layer>.png   every group's gate over the image, captioned, with a colour bar (every layer, or
                         only those named in ``mosaic_layers``; the CLI draws the deepest one unless
                         told ``--all-mosaics``)
    overlay.png          the most selective group of the deepest layer over the image
    other_<layer>.png    each gate over a 1-D or 3-D input: strips (rows = groups) or depth slices

The pictures are drawn by ``sge_viz.viz.analysis_pictures``: at least at the page's sizes, each carrying the
image's out-of-domain verdict on top.

With ``pictures=False`` only the two data files are written: drawing and PNG
encoding cost several forward passes per image, which matters for big folders.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import viz
from ..metrics.gates import analysis_stats
from ..viz.analysis_pictures import analysis_pictures
from .tempfiles import download_folder

if TYPE_CHECKING:
    from ..capture.analysis import Analysis


def npz_bytes(analysis: Analysis) -> bytes:
    """gates.npz as bytes: {layer name: float32 (G, h, w)}, and each gate over a 1-D or 3-D input by its name:
    (G, L) or (G, D, H, W)."""
    buffer = io.BytesIO()
    gates = {layer.name: np.asarray(layer.gate, dtype=np.float32) for layer in analysis.layers}
    gates.update({name: np.asarray(g, dtype=np.float32) for name, g in getattr(analysis, "other_gates", {}).items()})
    np.savez(buffer, **gates)
    return buffer.getvalue()


def stats_json(analysis: Analysis, mask: np.ndarray | None = None) -> str:
    """stats.json as text: one compact line, so json's C encoder writes it (with ``indent`` json falls
    back to pure Python)."""
    return json.dumps(analysis_stats(analysis, mask), separators=(",", ":")) + "\n"


def write_analysis(analysis: Analysis, out_dir: str | Path, mask: np.ndarray | None = None,
                   tile: int | None = None, pictures: bool = True, mosaic_layers: list[str] | None = None) -> Path:
    """Write the folder described in the module docstring, atomically.

    ``mosaic_layers``: the layers that get a mosaic PNG (default: every layer). Each one is drawn and
    PNG-encoded, the larger part of the writing time; ``pictures=False`` writes no PNG at all.

    Everything goes into a hidden temporary folder beside ``out_dir`` that is
    renamed into place at the end (``atomic_dir``); on any error it is removed,
    and an existing ``out_dir`` is only replaced once the new one is complete.
    """
    if not analysis.layers:
        raise ValueError("the analysis has no SGE layers to write")
    with atomic_dir(out_dir) as tmp:
        (tmp / "gates.npz").write_bytes(npz_bytes(analysis))
        (tmp / "stats.json").write_text(stats_json(analysis, mask), encoding="utf-8")
        if pictures:
            for name, picture in analysis_pictures(analysis, mosaic_layers, tile):
                (tmp / name).write_bytes(viz.to_png_bytes(picture))
    return Path(out_dir)


@contextlib.contextmanager
def atomic_dir(out_dir: str | Path) -> Iterator[Path]:
    """A hidden temporary folder beside ``out_dir`` to write into; renamed to ``out_dir`` when the block
    ends, removed on any error. An existing ``out_dir`` is only replaced once the new one is complete."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out_dir.parent / f".{out_dir.name}.partial-{token}"
    tmp.mkdir()
    try:
        yield tmp
        _replace_dir(tmp, out_dir, token)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path, token: str) -> None:
    """Rename ``new`` to ``target``; an old ``target`` is moved aside first and deleted after."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.parent / f".{target.name}.old-{token}"
        target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # put the previous results back
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def write_downloads(analysis: Analysis, pictures: dict[str, np.ndarray]) -> list[str]:
    """The on-screen pictures as PNGs plus gates.npz and stats.json (the CLI's formats), in a fresh folder.

    Returns the file paths; folders older than an hour are pruned as new ones are made.
    """
    folder = download_folder()
    paths = []
    for name, picture in pictures.items():
        path = folder / f"{_safe(name)}.png"
        path.write_bytes(viz.to_png_bytes(picture))
        paths.append(path)
    (folder / "gates.npz").write_bytes(npz_bytes(analysis))
    (folder / "stats.json").write_text(stats_json(analysis, analysis.mask), encoding="utf-8")
    paths += [folder / "gates.npz", folder / "stats.json"]
    return [str(p) for p in paths]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
