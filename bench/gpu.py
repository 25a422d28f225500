"""GPU figures: ``python bench/gpu.py [--out bench/GPU.md]`` on a machine with CUDA.

Checks the CUDA path (sge_resnet50 built on the GPU in float32, and in half
precision with channels_last; the captured gates are float32 numpy arrays on
the CPU and close to the CPU float32 gates) and times, like bench/run.py, in
interleaved rounds: bare forward, forward with the recorder, full analysis and
re-render at batch 1, then half-precision batch throughput of the bare forward
against batched analysis (forward + capture + gates to numpy) and against
``sge-viz analyze FOLDER --device cuda --half``. bench/run.py copies the
written section into RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the same cases and helpers)

from sge_viz.capture.analysis import analyze, analyze_views  # noqa: E402
from sge_viz.capture.preprocess import center_crop_view  # noqa: E402
from sge_viz.models.factory import LoadedModel  # noqa: E402


def place(loaded: LoadedModel, half: bool) -> LoadedModel:
    model = copy.deepcopy(loaded.model).to("cuda", torch.float16 if half else torch.float32)
    if half:
        model = model.to(memory_format=torch.channels_last)
    return LoadedModel(model.eval(), loaded.config, loaded.name, loaded.source, torch.device("cuda"),
                       torch.float16 if half else torch.float32)


def gate_check(cpu: LoadedModel, gpu: LoadedModel, pil) -> dict:
    want = analyze(cpu, pil)
    got = analyze(gpu, pil)
    worst = 0.0
    for a, b in zip(want.layers, got.layers):
        assert b.gate.dtype == np.float32 and isinstance(b.gate, np.ndarray) and b.gate.shape == a.gate.shape
        worst = max(worst, float(np.abs(a.gate - b.gate).max()))
    same_top1 = want.predictions[0].index == got.predictions[0].index
    return {"max_abs_gate_diff": worst, "same_top1": same_top1, "layers": len(got.layers)}


def throughput(gpu: LoadedModel, views: list[np.ndarray], rounds: int) -> dict:
    from sge_viz.capture.preprocess import normalise

    batch = torch.stack([normalise(v, gpu.config) for v in views]).to("cuda", gpu.dtype)
    if gpu.dtype == torch.float16:
        batch = batch.contiguous(memory_format=torch.channels_last)

    def bare():
        with torch.inference_mode():
            gpu.model(batch)

    def analysed():
        analyze_views(gpu, views)

    t = run.interleaved({"bare": bare, "analysis": analysed}, rounds, sync=torch.cuda.synchronize)
    n = len(views)
    return {"batch": n, "bare_ips": n / t.median("bare"), "analysis_ips": n / t.median("analysis")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cli-images", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "GPU.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 1
    torch.backends.cudnn.benchmark = True
    pil = run.test_image()
    torch.manual_seed(0)
    cpu, _ = run.resnet50("cpu")
    lines = [f"## GPU ({torch.cuda.get_device_name()}, torch {torch.__version__}, "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')})", ""]
    results = {}
    for label, half in (("float32", False), ("float16 + channels_last", True)):
        gpu = place(cpu, half)
        check = gate_check(cpu, gpu, pil)
        t, info = run.bench_model(gpu, pil, args.rounds, None, "", None, with_gradcam=False)
        bare = t.median("bare forward")
        results[label] = {"check": check, **{c: t.median(c) for c in t.samples}}
        lines += [f"### sge_resnet50 (random weights), {label}, batch 1", "",
                  f"Gates come back as float32 numpy arrays on the CPU; largest difference from the CPU float32 "
                  f"gates over all {check['layers']} layers: {check['max_abs_gate_diff']:.2e}; same top-1 class: "
                  f"{check['same_top1']}.", "",
                  "| case | median ms | x bare forward |", "| --- | ---: | ---: |"]
        lines += [f"| {c} | {run.fmt_ms(t.median(c))} | {t.median(c) / bare:.3f} |" for c in t.samples]
        lines.append("")
        print(label, check, {c: round(t.median(c) * 1000, 2) for c in t.samples}, flush=True)
    gpu = place(cpu, True)
    views = [center_crop_view(pil.rotate(i * 7), 256, 224) for i in range(args.batch)]
    tp = throughput(gpu, views, max(5, args.rounds // 2))
    results["throughput"] = tp
    lines += [f"### Half-precision batch throughput (batch {tp['batch']})", "",
              f"- bare forward: {tp['bare_ips']:.0f} images/s",
              f"- analysis (forward + capture of gates and group activations of all 16 layers, copied to the CPU "
              f"as numpy): {tp['analysis_ips']:.0f} images/s ({tp['analysis_ips'] / tp['bare_ips']:.2f}x)"]
    print("throughput", tp, flush=True)
    if args.cli_images:
        tmp = Path(tempfile.mkdtemp(prefix="sge_gpu_cli_"))
        run.make_folder(tmp / "big", args.cli_images, pil)
        run.make_folder(tmp / "small", 32, pil)
        cmd = ["--device", "cuda", "--half", "--batch-size", "32", "--workers", "4"]
        t_small = run_cli_gpu(tmp / "small", tmp / "o1", cmd)
        t_big = run_cli_gpu(tmp / "big", tmp / "o2", cmd)
        ips = (args.cli_images - 32) / max(t_big - t_small, 1e-9)
        results["cli"] = {"seconds": t_big, "marginal_ips": ips}
        lines.append(f"- `sge-viz analyze FOLDER --device cuda --half --batch-size 32 --workers 4` on "
                     f"{args.cli_images} JPEGs (every image written as gates.npz, stats.json, 16 mosaic PNGs and an "
                     f"overlay): {t_big:.1f} s, marginal {ips:.1f} images/s ({ips / tp['bare_ips']:.3f}x the bare "
                     "half-precision forward; the CPU-side drawing and PNG writing bound it)")
        print("cli", results["cli"], flush=True)
    lines.append("")
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


def run_cli_gpu(folder: Path, out: Path, extra: list[str]) -> float:
    import os
    import subprocess

    cmd = [sys.executable, "-m", "sge_viz", "analyze", str(folder), "--model", "sge_resnet50", "--random-weights",
           "--out", str(out), "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=run.ROOT, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
