"""Reader processes that end with the process that started them.

A DataLoader worker outlives a parent killed with SIGKILL (an OOM killer, a job scheduler): its
feeder thread waits for ever on a pipe that its sibling workers still hold open. ``worker_init``,
given to the DataLoader as ``worker_init_fn``, ties each worker to its parent twice over:

- on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment the thread
  that started it ends (the DataLoader's iterator lives in that thread while the workers run);
- everywhere, a daemon thread that checks once a ``period`` (seconds) whether the parent is still
  its parent and ends the process (``os._exit``, no waiting on pipes) when it is not.

A worker whose parent died before ``worker_init`` ran ends at once.
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_init_fn(period: float = 1.0) -> Callable[[int], None]:
    """A ``worker_init_fn`` for a DataLoader created in this process (records this process's id)."""
    return functools.partial(worker_init, parent=os.getpid(), period=period)


def worker_init(worker_id: int, parent: int, period: float = 1.0) -> None:
    """Run in a worker: end it with ``parent`` (a process id), see the module docstring."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still ends the worker
            pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(0)
    threading.Thread(target=_watch, args=(parent, period), name="sge-viz-lifeline", daemon=True).start()


def _watch(parent: int, period: float) -> None:
    while os.getppid() == parent:
        time.sleep(period)
    os._exit(0)
