"""A dissect killed with SIGKILL leaves no reader process behind, and --resume then completes."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import TINY_CONFIG, save_tiny
from dissect_helpers import make_image_set, state_done

from sge_viz.dissect.engine import STATE_FILE

REPO = Path(__file__).resolve().parents[2]



def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:  # a zombie has ended (only its exit status is left)
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow  # ~33 s on 2 shared cores: two processes start and load a model
def test_kill_9_leaves_no_worker_and_resume_completes(tmp_path):
    make_image_set(tmp_path / "set", count=80, masks=0)
    # Crops of 224 px (150 KB each) fill the pipe to the parent: a worker's feeder thread then blocks on
    # it, which is how orphans stay alive for good (small crops let them exit by themselves).
    ckpt = save_tiny(tmp_path / "tiny.safetensors", seed=3,
                     config=dataclasses.replace(TINY_CONFIG, input_size=224, resize_size=256))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sge_viz", "dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt),
            "--out", str(out), "--top-k", "3", "--batch-size", "1", "--save-every", "1", "--workers", "2",
            "--no-pictures", "--resume"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        children = _alive(parent.children(recursive=True))
        if len(children) >= 2 and state_done(out / STATE_FILE) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None and len(children) >= 2, "the run ended before its workers could be seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 10
    while _alive(children) and time.monotonic() < end:
        time.sleep(0.1)
    left = _alive(children)
    for p in left:  # do not leave them to the next test either
        p.kill()
    assert not left, f"{len(left)} of {len(children)} workers outlived their killed parent by 10 s"
    killed_at = state_done(out / STATE_FILE)
    assert 0 < killed_at < 80
    # Resumed in bigger batches, in this process alone (the saved state does not depend on either).
    resume = args[:args.index("--batch-size")] + ["--batch-size", "8", "--workers", "0", "--no-pictures", "--resume"]
    result = subprocess.run(resume, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_text())["images"] == 80
