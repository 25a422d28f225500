"""keep_freed_memory: page faults of repeated forwards, each process measured fresh (malloc settings are per
process)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Eight forwards of SGE-ResNet50 (random weights) at batch 2, 224 px, keeping every SGE layer's gate until the
# forward ends as a capture does: the page faults of forwards 3-8 (the heap has reached its size by then), and
# what keep_freed_memory returned.
FORWARDS = """
import json, resource, sys, torch
from sge_viz.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
from sge_viz.models.factory import create_model
model, gates = create_model("sge_resnet50", device="cpu", random_weights=True).model, []
for module in model.modules():
    if hasattr(module, "sig"):
        module.sig.register_forward_hook(lambda m, i, gate: gates.append(gate))
x, faults = torch.randn(2, 3, 224, 224), 0
with torch.inference_mode():
    for step in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        gates.clear()
        faults += (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * (step >= 2)
print(json.dumps({"set": kept, "faults": faults}))
"""


def forwards(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", FORWARDS, mode], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "PYTHONPATH": str(ROOT), **env}, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_without_page_faults():
    default, kept = forwards("default"), forwards("keep")
    assert kept["set"] is True
    # measured here: 37,000-57,000 by default (freed activations go back to the system and come back as fresh,
    # zeroed pages), 0-1,600 kept
    assert default["faults"] > 15000
    assert kept["faults"] < default["faults"] / 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_users_malloc_settings_are_left_alone():
    chosen = forwards("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert chosen["set"] is False
    assert chosen["faults"] > 15000  # glibc's behaviour, as the user asked
