"""Whole runs: the CLI's outputs, resume after kill -9, and the Ray engine equal to the local one."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from dissect_helpers import make_image_set, state_done, summaries_equal, tiny_loaded
from test_dissect_pictures import assert_same_pictures

from sge_viz.cli import main
from sge_viz.dissect.engine import STATE_FILE, run_local, run_ray
from sge_viz.dissect.report import entry_data
from sge_viz.dissect.summary import summary_dict
from sge_viz.explain.faithfulness import Removal
from sge_viz.io.inputs import collect
from sge_viz.sources import ModelSource

REPO = Path(__file__).resolve().parents[2]


def _cli(tmp_path, *args) -> list[str]:
    return [sys.executable, "-m", "sge_viz", "dissect", *map(str, args)]


def test_cli_writes_summary_figures_groups_and_a_self_contained_index(tmp_path, capsys):
    make_image_set(tmp_path / "set", count=6, masks=2)
    _, ckpt = tiny_loaded(tmp_path)
    (tmp_path / "set" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    started = time.perf_counter()
    code = main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out), "--top-k", "2",
                 "--batch-size", "4"])
    wall = time.perf_counter() - started
    assert code == 0
    # It says how long the pass and the report took: both within the call's own wall time.
    timing = re.search(r"time: ([\d.e+-]+) s for the pass over the images \(([\d.]+) images/s\), ([\d.e+-]+) s for "
                       r"the report", capsys.readouterr().out)
    assert timing and 0 < float(timing[1]) and 0 < float(timing[3]) and float(timing[1]) + float(timing[3]) < wall + 0.1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 6
    assert [s["path"].endswith("broken.png") for s in summary["skipped"]] == [True]
    layers = summary["layers"]
    for name, layer in layers.items():
        assert (out / "figures" / f"fig3_{name}.png").is_file() and (out / "figures" / f"fig4_{name}.png").is_file()
        assert len(layer["per_group"]) == layer["groups"]
        for g in layer["per_group"]:
            assert len(g["top"]) == 2
            assert (out / "groups" / name / f"g{g['group']:02d}.png").is_file()
    assert (out / "figures" / f"fig2_{list(layers)[-1]}.png").is_file()
    page = (out / "index.html").read_text()
    links = re.findall(r"(?:src|href)='([^']+)'", page)
    assert links and all(not link.startswith(("/", "http")) and (out / link).is_file() for link in links if "#" not in link)
    assert not list(out.glob(".report-*"))  # no temporary folder left
    # --json gives the same times as numbers.
    started = time.perf_counter()
    assert main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out), "--no-pictures",
                 "--json"]) == 0
    wall = time.perf_counter() - started
    seconds = json.loads(capsys.readouterr().out)["seconds"]
    assert 0 < seconds["pass"] and 0 <= seconds["report"] and seconds["pass"] + seconds["report"] < wall
    # Unknown layer: a usage error naming the layers.
    code = main(["dissect", str(tmp_path / "set"), "--checkpoint", str(ckpt), "--out", str(out), "--layers", "nope"])
    assert code == 2 and "unknown SGE layer" in capsys.readouterr().err


def test_resume_after_kill_9_gives_the_uninterrupted_summary(tmp_path):
    """The run is killed with SIGKILL twice at moments it does not choose, then resumed to the end."""
    make_image_set(tmp_path / "set", count=60, masks=5)
    loaded, ckpt = tiny_loaded(tmp_path)
    items = collect([tmp_path / "set"]).items
    want = summary_dict(run_local(loaded, items, 3, batch_size=1), {})
    out = tmp_path / "out"
    state = out / STATE_FILE
    args = _cli(tmp_path, tmp_path / "set", "--checkpoint", ckpt, "--out", out, "--top-k", 3, "--batch-size", 1,
                "--save-every", 1, "--workers", 0, "--no-pictures", "--resume")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed_at = []
    for _ in range(2):
        before = state_done(state)
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while state_done(state) <= before + 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append(state_done(state))
    assert 0 < killed_at[0] < killed_at[1] < 60, killed_at
    assert not (out / "summary.json").exists()
    killed_state = state.read_bytes()
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got = json.loads((out / "summary.json").read_text())
    assert got["images"] == 60
    assert not state.exists()  # a finished run leaves no state behind; a killed one kept it (above)
    summaries_equal({k: v for k, v in got.items() if k != "model"}, {k: v for k, v in want.items() if k != "model"},
                    rtol=1e-12)
    # A state saved by another run (here: another --top-k) is refused, not mixed in.
    state.write_bytes(killed_state)
    result = subprocess.run(args[:-1] + ["--resume", "--top-k", "2"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and "belongs to another run" in result.stderr


@pytest.mark.slow
def test_ray_engine_equals_the_local_engine(tmp_path):
    ray = pytest.importorskip("ray")
    make_image_set(tmp_path / "set", count=12, masks=4)
    (tmp_path / "set" / "broken.png").write_bytes(b"nope")
    loaded, ckpt = tiny_loaded(tmp_path)
    items = collect([tmp_path / "set"]).items
    faithfulness = Removal(step=0.5)  # each image's gaps travel with the partials too
    local = run_local(loaded, items, 3, batch_size=4, faithfulness=faithfulness)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_ray(ModelSource(checkpoint=str(ckpt), device="cpu"), items, 3, batch_size=4, workers=2,
                         faithfulness=faithfulness)
    finally:
        ray.shutdown()
    assert remote.images == local.images == 12
    assert remote.skipped == local.skipped and len(local.skipped) == 1
    # Names, counts, histograms, top-K order and cells exactly; floats to float32 precision (the actors
    # run torch on one thread each, which sums convolutions in another order than this process).
    summaries_equal(summary_dict(remote, {}), summary_dict(local, {}), rtol=1e-5)
    assert sorted(remote.faithfulness) == sorted(local.faithfulness) and len(local.faithfulness) == 12
    for name, record in local.faithfulness.items():
        np.testing.assert_allclose(remote.faithfulness[name]["groups"], record["groups"], atol=1e-4)
    # Every top entry came back with its pictures, the same as the local engine kept (maps to float16's step).
    for layer in remote.layers.values():
        assert (layer.best.slots() >= 0).all()
    assert_same_pictures(entry_data(remote, loaded, items), entry_data(local, loaded, items))
