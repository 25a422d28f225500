"""Writing one analysis to files (CLI) or bytes (downloads), never leaving half-written output.

Folder layout written by ``write_analysis``:

    gates.npz            one float32 (G, h, w) array per SGE layer, key = layer name
    stats.json           analysis_stats(): predictions and per-group gate statistics
    mosaic_<layer>.png   every group's gate over the image, captioned, with a colour bar (every layer, or
                         only those named in ``mosaic_layers``; the CLI draws the deepest one unless
                         told ``--all-mosaics``)
    overlay.png          the most selective group of the deepest layer over the image
    other_<layer>.png    each gate over a 1-D or 3-D input: strips (rows = groups) or depth slices

Both pictures are drawn at least at the page's sizes and carry the image's out-of-domain verdict on top.

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
from ..metrics.gates import analysis_stats, selectivity_order
from ..viz.figures import figure_pixels, other_gate_figure
from ..viz.verdict import mark
from .tempfiles import download_folder

if TYPE_CHECKING:
    from ..capture.analysis import Analysis

# The files are drawn at least at the page's sizes (sge_viz.app.views: mosaic_tile, MIN_VIEW_SIDE).
MOSAIC_WIDTH = 576  # a mosaic is about this wide: tiles of up to MAX_TILE px, smaller when many groups share it
MAX_TILE = 96  # px per mosaic tile at most: 8 groups -> 96 px tiles (292 px wide), 64 groups -> 70 px (574 px)
MIN_OVERLAY_SIDE = 320  # overlay.png is at least this many px per side: small inputs are enlarged first
CMAP = "inferno"


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


def enlarged(image: np.ndarray, min_side: int) -> np.ndarray:
    """``image`` (S, S, 3) enlarged by a whole factor (Lanczos) until its shorter side is at least ``min_side``."""
    side = min(image.shape[:2])
    if side >= min_side:
        return image
    factor = -(-min_side // side)
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((image.shape[1] * factor, image.shape[0] * factor),
                                                    Image.LANCZOS))


def _caption_lines(picture: np.ndarray, lines: list[str], size: int = 13) -> np.ndarray:
    """The picture under its caption lines, each wrapped to the picture's width (``viz.caption``)."""
    for line in reversed(lines):
        picture = viz.caption(picture, line, size=size)
    return picture


def export_tile(groups: int) -> int:
    """Tile side in px of a mosaic of ``groups`` groups in the files: the page's (48..MAX_TILE px)."""
    _, columns = viz.mosaic_grid(groups)
    return max(48, min(MAX_TILE, MOSAIC_WIDTH // columns - viz.GAP))


def mosaic_picture(analysis: Analysis, layer_name: str, tile: int | None = None,
                   image: np.ndarray | None = None) -> np.ndarray:
    """A layer's mosaic (``tile`` px per group, default ``export_tile``) with a caption that says what it
    shows, the colour scale under it and the image's out-of-domain verdict on top. ``image``: the analysis's
    image as ``enlarged`` gives it (computed when not given; a caller drawing every layer passes it once)."""
    layer = analysis.layer(layer_name)
    groups, height, width = layer.gate.shape
    image = enlarged(analysis.image, MIN_OVERLAY_SIDE) if image is None else image
    picture = viz.mosaic(image, layer.gate, cmap=CMAP, tile=tile or export_tile(groups))
    return _framed(picture, [f"{layer.name}: the SGE gate of each of its {groups} groups",
                             f"gate map {height}x{width} per group; tile label = group"], analysis)


def overlay_picture(analysis: Analysis, image: np.ndarray | None = None) -> tuple[np.ndarray, str, int]:
    """The deepest layer's most selective group over the image (enlarged to at least MIN_OVERLAY_SIDE px),
    captioned with the full layer name, with its colour bar and the out-of-domain verdict on top; also
    (layer, group). ``image``: as for ``mosaic_picture``."""
    layer = analysis.layers[-1]
    group = selectivity_order(layer.gate)[0]
    image = enlarged(analysis.image, MIN_OVERLAY_SIDE) if image is None else image
    picture = viz.overlay(image, layer.gate[group], cmap=CMAP)
    lines = [f"{layer.name}, group {group} of {layer.groups}", "its most selective group (deepest layer)"]
    return _framed(picture, lines, analysis), layer.name, group


def _framed(picture: np.ndarray, lines: list[str], analysis: Analysis) -> np.ndarray:
    """A picture of gates under its caption lines, over the 0..1 colour bar, with the out-of-domain verdict on
    top: how every picture of gates in the files is framed."""
    legend = viz.colorbar(CMAP, width=picture.shape[1], vmin=0.0, vmax=1.0)
    return mark(viz.stack([_caption_lines(picture, lines), legend, viz.caption(legend[:0], "gate value (0 to 1)")]),
                analysis.ood)


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
            image = enlarged(analysis.image, MIN_OVERLAY_SIDE)  # once for every picture (a Lanczos resize each)
            for layer in analysis.layers:
                if mosaic_layers is not None and layer.name not in mosaic_layers:
                    continue
                picture = mosaic_picture(analysis, layer.name, tile, image)
                (tmp / f"mosaic_{layer.name}.png").write_bytes(viz.to_png_bytes(picture))
            (tmp / "overlay.png").write_bytes(viz.to_png_bytes(overlay_picture(analysis, image)[0]))
            for name, gate in getattr(analysis, "other_gates", {}).items():
                picture = figure_pixels(other_gate_figure(name, gate))
                (tmp / f"other_{name}.png").write_bytes(viz.to_png_bytes(picture))
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
