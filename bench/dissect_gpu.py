"""GPU figures for image-set dissection: ``python bench/dissect_gpu.py`` on a machine with CUDA.

sge_resnet50 (random weights, SGE parameters perturbed as in bench/run.py) in float16 with channels_last,
batch 64. Writes bench/DISSECT_GPU.md (and .json):

1. per batch, interleaved rounds: the bare forward of a batch already normalised on the device (the
   strictest baseline) against ``dissect_batch`` from the host's 64 uint8 crops (stack, copy to the
   device, normalise, forward with the recorder, every reduction, the partial on the host); and 8
   batches merged into one partial, one after another or each queued before the previous one is
   finished on the host (as ``run_local`` does, so the host's work overlaps the device's);
2. what crosses to the host in one ``dissect_batch``: the bytes every ``Tensor.cpu()`` or copy into a
   host tensor took, against the bytes the recorder captured on the device;
3. the float16 GPU partial against the float32 CPU partial of the same crops;
4. ``sge-viz dissect FOLDER --device cuda --half --batch-size 64 --no-pictures`` end to end on JPEGs:
   marginal images/s, the difference of two folder sizes (start-up and model build cancel).

``--device cpu`` with small sizes checks the script itself on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as base  # noqa: E402  (bench/run.py: test image, model, timing helpers, JPEG folders)
from gpu import place  # noqa: E402  (bench/gpu.py: the model on CUDA, float16 + channels_last)

from sge_viz.capture.preprocess import center_crop_view, normalise_batch  # noqa: E402
from sge_viz.capture.recorder import GateRecorder  # noqa: E402
from sge_viz.dissect.reduce import dissect_batch, queue_batch  # noqa: E402
from sge_viz.dissect.summary import Partial  # noqa: E402

STREAM = 8  # batches per call of the streaming cases


def moved_bytes(fn) -> tuple[object, int]:
    """fn()'s result and the bytes that Tensor.cpu() or a copy_ into a host tensor took off a device."""
    original_cpu, original_copy, moved = torch.Tensor.cpu, torch.Tensor.copy_, [0]

    def counting_cpu(self, *args, **kwargs):
        if self.device.type != "cpu":
            moved[0] += self.numel() * self.element_size()
        return original_cpu(self, *args, **kwargs)

    def counting_copy(self, src, *args, **kwargs):
        if self.device.type == "cpu" and src.device.type != "cpu":
            moved[0] += src.numel() * src.element_size()
        return original_copy(self, src, *args, **kwargs)

    torch.Tensor.cpu, torch.Tensor.copy_ = counting_cpu, counting_copy
    try:
        return fn(), moved[0]
    finally:
        torch.Tensor.cpu, torch.Tensor.copy_ = original_cpu, original_copy


def agreement(want, got) -> dict:
    """How the GPU float16 partial differs from the CPU float32 one (same crops)."""
    worst_gate, hist_l1, top1_same, groups = 0.0, 0.0, 0, 0
    for name, a in want.layers.items():
        b = got.layers[name]
        worst_gate = max(worst_gate, float(np.abs(a.gate_sum - b.gate_sum).max() / a.images / a.height / a.width))
        for ha, hb in ((a.hist_before, b.hist_before), (a.hist_after, b.hist_after)):
            assert ha.sum() == hb.sum(), "histograms must count the same values"
            hist_l1 = max(hist_l1, float(np.abs(ha - hb).sum() / ha.sum()))
        top1_same += sum(ta[0][1] == tb[0][1] for ta, tb in zip(a.top, b.top))
        groups += a.groups
    return {"max_gate_mean_diff": worst_gate, "max_histogram_moved_fraction": hist_l1,
            "same_top_image_fraction": top1_same / groups, "groups": groups}


def cli_seconds(folder: Path, out: Path, device: str, batch: int, workers: int) -> float:
    cmd = [sys.executable, "-m", "sge_viz", "dissect", str(folder), "--model", "sge_resnet50", "--random-weights",
           "--batch-size", str(batch), "--workers", str(workers), "--out", str(out), "--no-pictures",
           "--device", device, *(["--half"] if device == "cuda" else [])]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--cli-images", type=int, nargs=2, default=(256, 2304), metavar=("SMALL", "BIG"))
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--profile", type=Path, help="also write torch.profiler's tables of 3 dissect_batch calls here")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "DISSECT_GPU.md")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 1
    started = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    pil = base.test_image()
    cpu, label = base.resnet50("cpu")
    dev = place(cpu, half=True) if cuda else cpu
    views = [center_crop_view(pil.rotate(i * 7), 256, 224) for i in range(args.batch)]
    names = [f"img{i:03d}.jpg" for i in range(args.batch)]
    prepared = normalise_batch(views, dev.config, dev.device, dev.dtype)
    if cuda:
        prepared = prepared.contiguous(memory_format=torch.channels_last)

    def bare():
        with torch.inference_mode():
            dev.model(prepared)

    def dissect():
        dissect_batch(dev, views, names, [None] * len(views), 9)

    def normalise():  # the host's crops to a normalised batch on the device
        normalise_batch(views, dev.config, dev.device, dev.dtype)

    def recorded():  # the forward with the recorder (gates and group sums of every layer, left on the device)
        with torch.inference_mode(), GateRecorder(dev.model, keep_on_device=True, output_sums=False):
            dev.model(prepared)

    # The same float16 model in the default (NCHW) layout, as `sge-viz dissect --half` runs it.
    nchw = dataclasses.replace(dev, model=copy.deepcopy(dev.model).to(memory_format=torch.contiguous_format))
    prepared_nchw = prepared.contiguous()

    def bare_nchw():
        with torch.inference_mode():
            nchw.model(prepared_nchw)

    def dissect_nchw():
        dissect_batch(nchw, views, names, [None] * len(views), 9)

    def stream(ahead: bool):  # STREAM batches merged into one partial, as run_local does
        def run():
            total, queued = Partial(9), None
            for _ in range(STREAM):
                if not ahead:
                    total = total.merge(dissect_batch(dev, views, names, [None] * len(views), 9))
                    continue
                latest = queue_batch(dev, views, names, [None] * len(views), 9)
                if queued is not None:
                    total = total.merge(queued.finish())
                queued = latest
            if queued is not None:
                total = total.merge(queued.finish())
        return run

    t = base.interleaved({"bare": bare, "normalise": normalise, "recorder": recorded, "dissect": dissect,
                          "bare NCHW": bare_nchw, "dissect NCHW": dissect_nchw,
                          "stream": stream(False), "stream ahead": stream(True)}, args.rounds, warmup=3, sync=sync)
    bare_s, dis_s = t.median("bare"), t.median("dissect")
    results = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
               "batch": args.batch, "bare_ips": args.batch / bare_s, "dissect_ips": args.batch / dis_s,
               "ratio": bare_s / dis_s, "ms": {case: t.median(case) * 1000 for case in t.samples}}
    print("per batch", results, flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
            for _ in range(3):
                dissect()
                sync()
        table = prof.key_averages()
        args.profile.write_text(table.table(sort_by="self_cpu_time_total", row_limit=30) + "\n\n" +
                                table.table(sort_by="self_device_time_total" if cuda else "cpu_time_total",
                                            row_limit=30), encoding="utf-8")

    with torch.inference_mode(), GateRecorder(dev.model, keep_on_device=True) as recorder:
        dev.model(prepared)
    captured = sum(v.numel() * v.element_size() for c in recorder.captures.values()
                   for v in (c.gate, c.before, c.before_sq) if v is not None)
    got, moved = moved_bytes(lambda: dissect_batch(dev, views, names, [None] * len(views), 9))
    results.update(captured_bytes=captured, moved_bytes=moved)
    print("to the host", moved, "of", captured, flush=True)

    want = dissect_batch(cpu, views, names, [None] * len(views), 9)
    results["agreement"] = agreement(want, got)
    print("agreement", results["agreement"], flush=True)

    small, big = args.cli_images
    tmp = Path(tempfile.mkdtemp(prefix="sge_dissect_gpu_"))
    base.make_folder(tmp / "small", small, pil)
    base.make_folder(tmp / "big", big, pil)
    # The fastest of two runs each: start-up (imports, CUDA, the model) only ever adds time.
    t_small = min(cli_seconds(tmp / "small", tmp / f"o1{i}", args.device, args.batch, args.workers) for i in range(2))
    t_big = min(cli_seconds(tmp / "big", tmp / f"o2{i}", args.device, args.batch, args.workers) for i in range(2))
    results["cli"] = {"small": small, "big": big, "seconds_small": t_small, "seconds_big": t_big,
                      "marginal_ips": (big - small) / max(t_big - t_small, 1e-9), "workers": args.workers,
                      "cpu_cores": os.cpu_count()}
    print("cli", results["cli"], flush=True)

    a, c = results["agreement"], results["cli"]
    stages = " / ".join(f"{results['ms'][case]:.1f}" for case in ("bare", "normalise", "recorder", "dissect"))
    lines = [f"## Dissection on a GPU ({results['device']}, torch {torch.__version__}, "
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, `python bench/dissect_gpu.py`)", "",
             f"{label}, float16 + channels_last, batch {args.batch}; medians of {args.rounds} interleaved rounds.", "",
             "| measure | value | target |", "|---|---|---|",
             f"| bare forward (batch already normalised on the device) | {results['bare_ips']:.0f} images/s | |",
             f"| `dissect_batch` ({args.batch} host crops -> partial on the host) | {results['dissect_ips']:.0f} images/s | |",
             f"| per batch: bare forward / crops normalised on the device / forward + recorder / dissect_batch | "
             f"{stages} ms | |",
             f"| the same in the NCHW layout (as `--half` runs it): bare forward / dissect_batch | "
             f"{results['ms']['bare NCHW']:.1f} / {results['ms']['dissect NCHW']:.1f} ms "
             f"({results['ms']['bare NCHW'] / results['ms']['dissect NCHW']:.3f}x) | |",
             f"| dissect / bare forward throughput | {results['ratio']:.3f}x | >= 0.5x "
             f"({'met' if results['ratio'] >= 0.5 else 'NOT met'}) |",
             f"| {STREAM} batches merged into one partial, per batch: one after another / each queued before the "
             f"previous is finished (as `run_local`) | {results['ms']['stream'] / STREAM:.1f} / "
             f"{results['ms']['stream ahead'] / STREAM:.1f} ms ({bare_s * STREAM / t.median('stream'):.3f}x / "
             f"{bare_s * STREAM / t.median('stream ahead'):.3f}x the bare forward) | >= 0.5x |",
             f"| bytes to the host per batch (every `Tensor.cpu()` and copy to a host tensor) | {moved / 1e3:.1f} KB of {captured / 1e6:.1f} MB "
             "captured on the device | partials only |",
             f"| `sge-viz dissect --device cuda --half --batch-size {args.batch} --workers {args.workers} "
             f"--no-pictures`, marginal over {big} vs {small} JPEGs | {c['marginal_ips']:.0f} images/s "
             f"({c['marginal_ips'] / results['bare_ips']:.3f}x the bare forward; {c['cpu_cores']} CPU cores "
             "decode the JPEGs) | |", "",
             f"Against the float32 CPU partial of the same crops: largest gate-mean difference "
             f"{a['max_gate_mean_diff']:.1e}; at most {a['max_histogram_moved_fraction']:.2%} of a layer's "
             f"lengths in another histogram bin; the same top image in {a['same_top_image_fraction']:.1%} of "
             f"{a['groups']} groups.", ""]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
