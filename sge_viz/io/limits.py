"""Service limits in one place: each is an environment variable with a sane default.

    SGE_VIZ_MAX_PIXELS      largest image (width x height) decoded       default 50,000,000
    SGE_VIZ_MAX_UPLOAD_MB   largest image file accepted, in MiB          default 25
    SGE_VIZ_QUEUE_SIZE      requests waiting in the app's queue          default 64
    SGE_VIZ_CONCURRENCY     analyses the app runs at the same time       default 2
    SGE_VIZ_MAX_ARCHIVE_MB  total uncompressed size of a .zip's images   default 4096
    SGE_VIZ_MAX_ZIP_RATIO   largest uncompressed/compressed size ratio   default 200
                            of one .zip member (zip bombs are ~1000:1)
    SGE_VIZ_MAX_SET_IMAGES  images one app "Image set" request analyses  default 200

The pixel limit is checked against the size in the file's header, before any
pixel is decoded, so a small file claiming a huge canvas costs nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import SGEVizError

DEFAULT_MAX_PIXELS = 50_000_000  # a 50 MP photo decodes to ~150 MB of RGB; enough for any camera image
DEFAULT_MAX_UPLOAD_MB = 25
DEFAULT_QUEUE_SIZE = 64
DEFAULT_CONCURRENCY = 2  # one analysis per CPU core on a small server; raise it on a GPU box
DEFAULT_MAX_ARCHIVE_MB = 4096
DEFAULT_MAX_ZIP_RATIO = 200  # PNG/JPEG members barely compress (~1:1); a zip bomb's are ~1000:1
DEFAULT_MAX_SET_IMAGES = 200


@dataclass(frozen=True)
class Limits:
    """The limits in force; see the module docstring for what each bounds."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    queue_size: int = DEFAULT_QUEUE_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_MB * 1024 * 1024
    max_zip_ratio: float = DEFAULT_MAX_ZIP_RATIO
    max_set_images: int = DEFAULT_MAX_SET_IMAGES


def _positive(env: dict[str, str], name: str, default: float, cast: type = int) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw.replace("_", ""))
    except ValueError:
        raise SGEVizError(f"Setting {name}={raw!r} is not a number: unset it or give a positive value.") from None
    if value <= 0:
        raise SGEVizError(f"Setting {name}={raw!r} must be positive: unset it or give a positive value.")
    return value


def limits_from_env(env: dict[str, str] | None = None) -> Limits:
    """The limits in force: environment variables over the defaults; a bad value is an error, not ignored."""
    env = dict(os.environ if env is None else env)
    return Limits(
        max_pixels=int(_positive(env, "SGE_VIZ_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
        max_upload_bytes=int(_positive(env, "SGE_VIZ_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB, float) * 1024 * 1024),
        queue_size=int(_positive(env, "SGE_VIZ_QUEUE_SIZE", DEFAULT_QUEUE_SIZE)),
        concurrency=int(_positive(env, "SGE_VIZ_CONCURRENCY", DEFAULT_CONCURRENCY)),
        max_archive_bytes=int(_positive(env, "SGE_VIZ_MAX_ARCHIVE_MB", DEFAULT_MAX_ARCHIVE_MB, float) * 1024 * 1024),
        max_zip_ratio=float(_positive(env, "SGE_VIZ_MAX_ZIP_RATIO", DEFAULT_MAX_ZIP_RATIO, float)),
        max_set_images=int(_positive(env, "SGE_VIZ_MAX_SET_IMAGES", DEFAULT_MAX_SET_IMAGES)),
    )


def current_limits() -> Limits:
    """Read at call time, so a test or a deployment can change the environment without re-importing."""
    return limits_from_env()
