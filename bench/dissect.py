"""Benchmark of image-set dissection and the batch ``analyze`` path against the bare batched forward.

    python bench/dissect.py            # ~3 minutes on 2 CPU cores; writes bench/DISSECT.md

CPU, sge_resnet50 at 224 with random weights whose SGE parameters are perturbed, batch 8. Every ratio
compares timings taken in this one run, interleaved (the machine may be shared):

1. per batch: ``dissect_batch`` (forward + capture + every reduction) vs the bare forward of the same
   8 crops (normalise + forward);
2. ``sge-viz dissect --no-pictures`` end to end (reading JPEGs on 2 workers, cropping, forward,
   reductions, merging): marginal time per image (difference of a 48- and a 16-image folder, which
   cancels start-up and model build) vs the bare batched forward per image;
3. peak RSS of a fresh process dissecting 32 vs 96 images (3x);
4. ``sge-viz analyze`` marginal throughput with pictures and with ``--no-pictures`` vs the bare batched
   forward (the method of bench/run.py, whose functions this script reuses).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as base  # noqa: E402  (bench/run.py: test image, model, timing helpers, the CLI measurement)
import torch  # noqa: E402

from sge_viz.capture.preprocess import normalise  # noqa: E402
from sge_viz.capture.recorder import GateRecorder  # noqa: E402
from sge_viz.dissect.engine import load_item, run_local  # noqa: E402
from sge_viz.dissect.inputs import collect  # noqa: E402
from sge_viz.dissect.reduce import dissect_batch  # noqa: E402

BATCH = 8
KEEP = "<!-- kept by bench/dissect.py: the notes below are written by hand -->"
TARGETS = {"dissect per batch": 1.15, "dissect engine": 1.15, "rss 3x": 1.10, "analyze pictures": 0.5,
           "analyze no-pictures": 0.9}


def rss_child(folder: str, count: int) -> None:
    loaded, _ = base.resnet50("cpu")
    items = collect([folder]).items[:count]
    run_local(loaded, items, 9, batch_size=BATCH, workers=0)
    print(json.dumps({"images": len(items), "peak_rss_mb": base.peak_rss_mb()}))


def measure_rss(folder: Path, count: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(folder), str(count)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "DISSECT.md")
    p.add_argument("--rss-child", nargs=2, metavar=("FOLDER", "COUNT"))
    args = p.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return 0
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    pil = base.test_image()
    tmp = Path(tempfile.mkdtemp(prefix="sge_bench_dissect_"))
    rows, notes = [], []
    try:
        base.make_folder(tmp / "big", 48, pil)
        base.make_folder(tmp / "small", 16, pil)
        loaded, label = base.resnet50("cpu")
        cfg = loaded.config
        items = collect([tmp / "big"]).items
        views = [load_item(i, cfg.resize_size, cfg.input_size)[0] for i in items[:BATCH]]
        names = [i.name for i in items[:BATCH]]

        def bare():
            x = torch.stack([normalise(v, cfg) for v in views])
            with torch.inference_mode():
                loaded.model(x)

        def dissect():
            dissect_batch(loaded, views, names, [None] * BATCH, 9)

        def recorder():  # the capture alone (gates and group sums of all 16 layers), left on the device
            x = torch.stack([normalise(v, cfg) for v in views])
            with torch.inference_mode(), GateRecorder(loaded.model, keep_on_device=True):
                loaded.model(x)

        start = time.perf_counter()
        for item in items:
            load_item(item, cfg.resize_size, cfg.input_size)
        decode = (time.perf_counter() - start) / len(items)
        notes.append(f"Reading one of these JPEGs (300-512 px, ~ImageNet's sizes), resizing and cropping it: "
                     f"{decode * 1000:.1f} ms on one core (the images/s a reading core can feed).")

        # 1. per batch
        t = base.interleaved({"bare": bare, "recorder": recorder, "dissect": dissect}, args.rounds, warmup=1)
        bare_s, dis_s = t.median("bare"), t.median("dissect")
        notes.append(f"Per batch of 8 (medians of {args.rounds} interleaved rounds): bare forward "
                     f"{bare_s * 1000:.0f} ms, forward + recorder (gates and group sums of all 16 layers) "
                     f"{t.median('recorder') * 1000:.0f} ms, dissect_batch (recorder + every reduction) "
                     f"{dis_s * 1000:.0f} ms.")
        rows.append(("dissect per batch of 8: time per image vs bare batched forward", "dissect per batch",
                     dis_s / bare_s, f"{dis_s / BATCH * 1000:.1f} vs {bare_s / BATCH * 1000:.1f} ms/image"))

        print("measured", rows[-1][:3], flush=True)
        # 2. the local engine end to end through the CLI (as the analyze measurement), bracketed by bare timings
        def dissect_cli(folder: Path, out: Path) -> float:
            cmd = [sys.executable, "-m", "sge_viz", "dissect", str(folder), "--model", "sge_resnet50",
                   "--random-weights", "--batch-size", str(BATCH), "--workers", "2", "--out", str(out),
                   "--no-pictures", "--device", "cpu"]
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
            return time.perf_counter() - start

        b0 = base.interleaved({"bare": bare}, 3, warmup=0).median("bare")
        t_small = dissect_cli(tmp / "small", tmp / "out_small")
        t_big = dissect_cli(tmp / "big", tmp / "out_big")
        b1 = base.interleaved({"bare": bare}, 3, warmup=0).median("bare")
        marginal = (t_big - t_small) / (48 - 16)
        bare_per_image = (b0 + b1) / 2 / BATCH
        rows.append(("sge-viz dissect --no-pictures (JPEGs read by 2 workers): marginal time per image vs bare "
                     "batched forward", "dissect engine", marginal / bare_per_image,
                     f"{marginal * 1000:.1f} vs {bare_per_image * 1000:.1f} ms/image"))
        print("measured", rows[-1][:3], flush=True)
        # 3. memory for 3x as many images
        # 32 vs 96: the first batches also warm the allocator up (glibc's mmap threshold rises as large
        # blocks are freed), which is start-up, not growth with the number of images.
        base.make_folder(tmp / "rss", 96, pil)
        # Median of three fresh processes per count: one process's peak moves by about +-5% from run to run.
        r32 = statistics.median(measure_rss(tmp / "rss", 32) for _ in range(3))
        r96 = statistics.median(measure_rss(tmp / "rss", 96) for _ in range(3))
        rows.append(("peak RSS, 96 images vs 32 images (fresh process each)", "rss 3x", r96 / r32,
                     f"{r96:.0f} vs {r32:.0f} MB"))

        # 4. the batch analyze CLI
        threads = torch.get_num_threads()
        for pictures, key in ((True, "analyze pictures"), (False, "analyze no-pictures")):
            res = base.batch_throughput(pil, 48, BATCH, 2, threads, args.rounds, repeats=3, pictures=pictures)
            print("measured", rows[-1][:3] if rows else "", flush=True)
            rows.append((f"sge-viz analyze {'(pictures)' if pictures else '--no-pictures'}: marginal throughput "
                         "vs bare batched forward", key, res["ratio"],
                         f"{res['cli_ips']:.2f} vs {res['bare_ips']:.2f} images/s; CPU-time ratio "
                         f"{res['cpu_ratio']:.3f}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    lines = ["# Dissection benchmark", "",
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {platform.processor() or platform.machine()}"
             f" · {os.cpu_count()} CPU cores · torch {torch.__version__} · {label} at 224, batch {BATCH} · "
             f"{elapsed:.0f} s · `python bench/dissect.py`", "",
             "| measure | ratio | target | met | numbers |", "|---|---|---|---|---|"]
    for text, key, ratio, numbers in rows:
        limit = TARGETS[key]
        met = ratio <= limit if key in ("dissect per batch", "dissect engine", "rss 3x") else ratio >= limit
        sign = "<=" if key in ("dissect per batch", "dissect engine", "rss 3x") else ">="
        lines.append(f"| {text} | {ratio:.3f}x | {sign} {limit}x | {'yes' if met else 'NO'} | {numbers} |")
        print(f"{text}: {ratio:.3f}x (target {sign} {limit}x) {numbers}")
    lines += ["", *notes]
    # Hand-written notes below the marker (analysis, Figs. 2-4) survive a rerun.
    kept = args.out.read_text(encoding="utf-8").partition(KEEP)[2] if args.out.is_file() else ""
    args.out.write_text("\n".join(lines) + "\n" + (f"\n{KEEP}{kept}" if kept else ""), encoding="utf-8")
    print(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
