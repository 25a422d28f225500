"""What a batch job reads: image files, folders (walked recursively) and .zip archives (read in place).

Every image becomes an ``Item``: a small, picklable record (its name in the summary, where its bytes
are, where its mask is), so a list of 10,000 of them costs a few MB and any worker process or Ray
actor can open it. Names are the path relative to the input folder, the name inside the zip, or the
file name of an image given directly.

Masks: ``<stem>_mask.png`` beside an image (in the same folder, or the same folder inside the zip) is
that image's object mask, never an image of its own (``sge_viz.io.masks``).

Hostile input, each refused with a reason and never fatal to the others:

- zip bombs: an archive whose images claim more than ``max_archive_bytes`` uncompressed in total is
  an error; a member compressed more than ``max_zip_ratio`` : 1 is skipped; reading a member stops
  one byte past the size its header claims (a lying header gains nothing);
- members whose names would escape a folder (absolute, ``..``, drive letters) are skipped;
- archives inside archives are skipped (never opened);
- symbolic links to folders are not followed (no loops); links that do not resolve are skipped;
- a folder with no images, or no input with any image, is an error saying so.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..errors import SGEVizError
from .images import IMAGE_SUFFIXES, open_image
from .limits import Limits, current_limits
from .masks import MASK_SUFFIX, is_mask_file, mask_path, read_mask

ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".jar")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


@dataclass(frozen=True)
class Item:
    """One image to analyse: ``name`` (as the summary shows it), ``path`` (the file, or the zip holding
    it), ``member`` (its name inside the zip, or None) and its mask's file/member (or None)."""

    name: str
    path: str
    member: str | None = None
    mask: str | None = None


@dataclass
class InputSet:
    """The images found, in a fixed order, and what was skipped (``{"path", "reason"}``)."""

    items: list[Item] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def collect(inputs: Sequence[str | Path], limits: Limits | None = None) -> InputSet:
    """Every image of ``inputs`` (files, folders, .zip archives), sorted within each input.

    Raises SGEVizError for an input that does not exist, a folder or archive with no image, an archive
    over the size limit, or when nothing at all is left to analyse.
    """
    limits = limits or current_limits()
    found = InputSet()
    seen: set[str] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            before = len(found.skipped)
            items = _walk(path, found.skipped)
            if not items:
                zips = " (an archive inside a folder is not opened: give it as an input of its own)" if any(
                    s["reason"].startswith("archive inside a folder") for s in found.skipped[before:]) else ""
                raise SGEVizError(f"Folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}){zips}: give a "
                                  "folder with images.")
        elif path.is_file() and is_zip(path):
            items = _zip_items(path, found.skipped, limits)
        elif path.is_file():
            items = [Item(path.name, str(path), None, mask_file(path))]
        else:
            raise SGEVizError(f"{path} does not exist: give image files, folders of images or .zip archives.")
        for item in items:
            name, n = item.name, 2
            while name in seen:  # two inputs with the same relative name: keep both, told apart
                name, n = f"{item.name} ({n})", n + 1
            seen.add(name)
            found.items.append(item if name == item.name else Item(name, item.path, item.member, item.mask))
    if not found.items:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in found.skipped[:3])
        raise SGEVizError("No image to analyse in the inputs" + (f" ({reasons})" if reasons else "") +
                          ": give image files, folders of images or .zip archives.")
    return found


def is_zip(path: Path) -> bool:
    """True for a .zip file, by its name or its first bytes."""
    if path.suffix.lower() == ".zip":
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) in _ZIP_MAGIC
    except OSError:
        return False


def mask_file(image: Path) -> str | None:
    """The path of ``image``'s ``<stem>_mask.png`` when that file exists, else None."""
    mpath = mask_path(image)
    return str(mpath) if mpath.is_file() else None


def _walk(root: Path, skipped: list[dict]) -> list[Item]:
    """Images under ``root``, recursively, sorted by relative path; folder symlinks are not followed."""
    items: list[Item] = []
    for folder, dirs, files in os.walk(root, followlinks=False, onerror=lambda e: skipped.append(
            {"path": str(e.filename), "reason": f"folder could not be read ({e.strerror})"})):
        here = Path(folder)
        dirs.sort()
        for d in list(dirs):
            if (here / d).is_symlink():
                skipped.append({"path": str(here / d), "reason": "symbolic link to a folder: not followed"})
                dirs.remove(d)
        for name in sorted(files):
            path = here / name
            suffix = path.suffix.lower()
            if is_mask_file(path):
                continue
            if suffix in ARCHIVE_SUFFIXES:
                skipped.append({"path": str(path), "reason": "archive inside a folder input: give it as an "
                                                             "input of its own"})
                continue
            if suffix not in IMAGE_SUFFIXES:
                continue
            if not path.is_file():  # a link that does not resolve, or resolves in a loop
                skipped.append({"path": str(path), "reason": "broken or looping symbolic link"})
                continue
            items.append(Item(path.relative_to(root).as_posix(), str(path), None, mask_file(path)))
    return items


def _escapes(name: str) -> bool:
    """True for member names that would land outside a folder they were unpacked into."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name).parts


def _zip_items(path: Path, skipped: list[dict], limits: Limits) -> list[Item]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SGEVizError(f"Archive {path} could not be read ({exc}): give a valid .zip file.") from exc
    names = {i.filename for i in infos}
    items, total = [], 0
    for info in sorted(infos, key=lambda i: i.filename):
        name = info.filename
        where = f"{path}:{name}"
        suffix = PurePosixPath(name).suffix.lower()
        if _escapes(name):
            skipped.append({"path": where, "reason": "member name would escape its folder (absolute or '..'): "
                                                      "refused"})
            continue
        if suffix in ARCHIVE_SUFFIXES:
            skipped.append({"path": where, "reason": "archive inside an archive: refused"})
            continue
        if suffix not in IMAGE_SUFFIXES or is_mask_file(name):
            continue
        if info.file_size > limits.max_upload_bytes:
            skipped.append({"path": where, "reason": f"{info.file_size:,} bytes uncompressed, over the "
                                                      f"{limits.max_upload_bytes:,}-byte image limit"})
            continue
        if info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
            skipped.append({"path": where, "reason": f"compressed {info.file_size / max(info.compress_size, 1):.0f}"
                                                      f":1, over the {limits.max_zip_ratio:g}:1 limit "
                                                      "(SGE_VIZ_MAX_ZIP_RATIO): a zip bomb?"})
            continue
        total += info.file_size
        stem = PurePosixPath(name)
        mask = str(stem.with_name(f"{stem.stem}{MASK_SUFFIX}.png"))
        items.append(Item(name, str(path), name, mask if mask in names else None))
    if total > limits.max_archive_bytes:
        raise SGEVizError(f"Archive {path} holds {total:,} bytes of images uncompressed, over the "
                          f"{limits.max_archive_bytes / 2**20:g} MB limit (SGE_VIZ_MAX_ARCHIVE_MB): split it.")
    if not items:
        raise SGEVizError(f"Archive {path} holds no images ({', '.join(IMAGE_SUFFIXES)}): give a .zip of images.")
    return items


# --- reading, in whichever process runs the item ---------------------------------------------------------

_open_zips: dict[tuple[int, str], zipfile.ZipFile] = {}


def _zip(path: str) -> zipfile.ZipFile:
    """One open ZipFile per archive and process (workers and actors each open their own)."""
    key = (os.getpid(), path)
    zf = _open_zips.get(key)
    if zf is None:
        zf = _open_zips[key] = zipfile.ZipFile(path)
    return zf


def read_member(path: str, member: str, limits: Limits | None = None) -> bytes:
    """A zip member's bytes, at most the image size limit and never more than its header claims."""
    limits = limits or current_limits()
    zf = _zip(path)
    try:
        info = zf.getinfo(member)
        if info.file_size > limits.max_upload_bytes:
            raise SGEVizError(f"{member} is {info.file_size:,} bytes, over the image limit.")
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise SGEVizError(f"could not be read from the archive ({type(exc).__name__}: {exc})") from exc
    if len(data) > info.file_size:
        raise SGEVizError("holds more bytes than its header claims: refused")
    if data[:4] in _ZIP_MAGIC:
        raise SGEVizError("is an archive inside an archive: refused")
    return data


def open_image_of(item: Item, limits: Limits | None = None) -> Image.Image:
    """The item's RGB image; SGEVizError says why it cannot be read."""
    if item.member is None:
        return open_image(item.path, max_pixels=limits and limits.max_pixels,
                          max_bytes=limits and limits.max_upload_bytes)
    return open_image(read_member(item.path, item.member, limits))


def open_mask_of(item: Item, size: tuple[int, int], limits: Limits | None = None) -> np.ndarray | None:
    """The item's mask (H, W) bool for an image of ``size`` (width, height), None without one; SGEVizError
    says why it cannot be used (unreadable, or another size than its image)."""
    if not item.mask:
        return None
    if item.member is None:
        return read_mask(item.mask, size)
    return _mask_bytes(read_member(item.path, item.mask, limits), item.mask, size)


def _mask_bytes(data: bytes, name: str, size: tuple[int, int]) -> np.ndarray:
    """A mask member as (H, W) bool, by the rules of ``sge_viz.io.masks.read_mask``."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            mask = np.asarray(image.convert("L")) > 127
    except (OSError, ValueError) as exc:
        raise SGEVizError(f"Mask {name} could not be read ({exc}): save it again as a PNG.") from exc
    if (mask.shape[1], mask.shape[0]) != tuple(size):
        raise SGEVizError(f"Mask {name} is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}: "
                          "a mask must have its image's size.")
    return mask


def names(items: Iterable[Item]) -> list[str]:
    """The items' names, in order."""
    return [item.name for item in items]
