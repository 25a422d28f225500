"""Temporary files the app hands to Gradio: fast-written PNGs and download folders, pruned after an hour.

Gradio encodes a numpy image output as PNG at zlib's default level, which for
a 782x782 mosaic costs about as much as the network's forward pass. Handing it
a file written here instead (zlib level 1: same pixels, slightly larger)
takes most of that off every request and every redraw. PNG files
are named by their content, so a picture shown twice is written once.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

PNG_ROOT = Path(tempfile.gettempdir()) / "sge_viz_png"
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "sge_viz_downloads"
TTL_S = 3600
_PRUNE_EVERY_S = 60
_last_prune: dict[Path, float] = {}
_lock = threading.Lock()


def png_path(image: np.ndarray, compress_level: int = 1, root: Path | None = None) -> str:
    """Write an (H, W, 3) uint8 image as PNG (once per distinct picture) and return its path."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    folder = root or PNG_ROOT
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder)
    digest = hashlib.blake2b(image.data, digest_size=16)
    digest.update(repr(image.shape).encode())
    path = folder / f"{digest.hexdigest()}.png"
    if not path.is_file():
        tmp = folder / f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp"
        Image.fromarray(image).save(tmp, format="PNG", compress_level=compress_level)
        os.replace(tmp, path)  # readers never see a half-written file
    else:
        os.utime(path)  # still in use: keep it out of the next prune
    return str(path)


def download_folder(root: Path | None = None) -> Path:
    """A fresh, empty folder for one set of downloads (old ones are pruned)."""
    folder = root or DOWNLOAD_ROOT
    folder.mkdir(parents=True, exist_ok=True)
    prune(folder)
    return Path(tempfile.mkdtemp(prefix="sge_viz_", dir=folder))


def prune(folder: Path, ttl_s: float = TTL_S) -> None:
    """Remove entries (files or folders) of ``folder`` untouched for ``ttl_s``; at most once a minute."""
    now = time.time()
    with _lock:
        if now - _last_prune.get(folder, 0.0) < _PRUNE_EVERY_S:
            return
        _last_prune[folder] = now
    cutoff = now - ttl_s
    for entry in folder.iterdir():
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        except OSError:
            continue
