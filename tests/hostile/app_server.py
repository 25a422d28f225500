"""Run the real app (``python app.py``) in a subprocess on a free localhost port, for API tests.

A subprocess, not a thread: its resident memory can be measured on its own, and
a crash in it shows up as a dead process rather than a hung test.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@contextmanager
def running_app(checkpoint: Path, workdir: Path, env: dict[str, str] | None = None,
                start_timeout: float = 180.0) -> Iterator[AppServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "app.log"
    full_env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(workdir / "gradio"),
                    PYTHONUNBUFFERED="1", **(env or {}))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(checkpoint),
                                 "--port", str(port), "--device", "cpu"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    server = AppServer(url, proc, log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if not server.alive():
                raise RuntimeError(f"the app exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(url + "config", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer within {start_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
