"""Shared by the dissect tests: a small image set on disk (with masks, in a subfolder too) and a tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import TINY_CONFIG, save_tiny, structured_image
from PIL import Image

from sge_viz.dissect.summary import Partial
from sge_viz.models.factory import load_checkpoint


def make_image_set(folder: Path, count: int = 10, masks: int = 4, seed: int = 0) -> list[Path]:
    """``count`` photo-like images (every third one in ``sub/``), the first ``masks`` with a ``_mask.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        where = folder / "sub" if i % 3 == 2 else folder
        where.mkdir(exist_ok=True)
        width, height = 60 + 7 * (i % 4), 50 + 5 * (i % 3)
        image = structured_image(width, height, seed=seed + i)
        path = where / f"img_{i:02d}.png"
        image.save(path)
        if i < masks:
            yy, xx = np.mgrid[0:height, 0:width]
            inside = ((xx - width * 0.55) / (width * 0.25)) ** 2 + ((yy - height * 0.5) / (height * 0.3)) ** 2 < 1
            Image.fromarray(inside.astype(np.uint8) * 255).save(where / f"img_{i:02d}_mask.png")
        paths.append(path)
    return paths


def tiny_loaded(tmp_path: Path, seed: int = 3):
    """A tiny model saved to disk and loaded back on the CPU: (LoadedModel, checkpoint path)."""
    path = save_tiny(tmp_path / "tiny.safetensors", seed=seed, config=TINY_CONFIG)
    return load_checkpoint(path, device="cpu"), path


def summaries_equal(a: dict, b: dict, rtol: float = 1e-12) -> None:
    """Two summary dicts equal: structure, names, counts and top-K exactly, floats to ``rtol``."""
    assert json.dumps(_shape(a)) == json.dumps(_shape(b))
    fa, fb = _floats(a), _floats(b)
    np.testing.assert_allclose(fa, fb, rtol=rtol, atol=1e-9 if rtol > 1e-9 else 1e-12)


def _shape(x):
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(v) for v in x]
    if isinstance(x, float):
        return "f"
    return x


def _floats(x) -> list[float]:
    out: list[float] = []
    if isinstance(x, dict):
        for v in x.values():
            out += _floats(v)
    elif isinstance(x, list):
        for v in x:
            out += _floats(v)
    elif isinstance(x, float):
        out.append(x)
    return out


def state_done(path: Path) -> int:
    """How many inputs the saved state at ``path`` has consumed; -1 when there is none (or it is unreadable)."""
    try:
        return int(Partial.load(path)[1]["done"])
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return -1
