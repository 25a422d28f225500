"""glibc's malloc settings for a process that exists to run the same CPU forward many times (``sge-viz dissect``,
its Ray actors).

By default glibc gives freed memory at the top of its heap back to the system, and serves large blocks with
fresh ``mmap`` pages. A forward frees and allocates its activations again on every batch, so every batch
touches fresh pages, each a page fault and a zeroed page: 12,500-53,000 per batch of 8 for SGE-ResNet50 at
224 px on 2 CPU cores, depending on the heap's history. With ``keep_freed_memory`` the process keeps freed
memory for reuse: no page faults after the first batches, and the forward and dissect ran ~9% faster in 4
pairs of fresh processes (one bench run measured the opposite; bench/DISSECT.md). The peak is the same, but
the memory is not given back until the process ends. That is why the app's server does not call it.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit: blocks above it still come from mmap
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB freed at the top of the heap
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory in the process (blocks up to 32 MB from the heap, the heap not
    trimmed below 1 GiB of free space). True when set; False where the C library is not glibc, or where the
    user chose malloc settings in the environment (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
    ``GLIBC_TUNABLES``), which are left as they are."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
