"""Benchmark of image-set dissection against the bare batched forward.

    nice python bench/dissect.py                 # ~10 minutes on 2 CPU cores; writes bench/DISSECT.md
    nice python bench/dissect.py --with-analyze  # also the `sge-viz analyze` rows (bench/run.py's method)

CPU, sge_resnet50 at 224 with random weights whose SGE parameters are perturbed (an official-form
network), batch 8, folders of 40 and 120 JPEGs of 320x256. Every ratio compares timings taken in this
one run (the machine may be shared: rounds are interleaved and medians reported):

1. where the time goes: one pass over the 40 images in this process, stage by stage (read, decode,
   preprocess, forward with capture (the group sums of SGE's input are taken in the hooks), reductions
   (the pictures of the top entries kept included), merge, save, pictures drawn), the loop of
   ``run_local`` with a clock around each step;
2. per batch of 8: ``dissect_batch`` without and with pictures (the latter merged into the summary of
   the other 32 images, as in a running pass) vs the bare forward of the same crops;
3. end to end with the CLI's default options (2 reading workers, the resumable state saved under its
   default rule), with pictures and with ``--no-pictures``: marginal time per image,
   (t(120) - t(40)) / 80, against the same marginal of the bare pass over the same JPEGs (the same
   network, DataLoader, reading workers and batches of 8, forward only):
   a. the target rows: the cost of the 41st to the 120th image, from ``--stream-rounds`` passes over the
      120 JPEGs in this process (``paired_stream``): every batch goes through the bare forward and
      through ``run_local``'s per-batch steps without and with pictures (each against its own running
      summary), one right after the other, so the machine's drift cancels batch by batch. The ratio is
      taken per round, the median reported with 2 standard errors of the mean (how finely the run
      resolves); the saved state's share in a long run is added as a note (between 40 and 120 images
      the CLI saves once either way);
   b. ``sge-viz dissect --json`` in fresh processes (``--rounds``), where process start-up and the
      report (a fixed cost, printed for both sizes) add their noise: the same ratio from the pass's own
      clock (``seconds.pass``) and from the whole process, as notes; and each run's peak RSS (120 vs 40
      images: 3x the images).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import run as base  # noqa: E402  (bench/run.py: test image, model, timing helpers, the CLI measurement)
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sge_viz.capture.preprocess import center_crop_view, normalise, normalise_batch  # noqa: E402
from sge_viz.capture.recorder import GateRecorder  # noqa: E402
from sge_viz.cli.dissect import SAVE_SECONDS  # noqa: E402
from sge_viz.dissect.engine import run_local, save_state  # noqa: E402
from sge_viz.dissect.reduce import QueuedReduction, dissect_batch, select_layers  # noqa: E402
from sge_viz.dissect.report import write_report  # noqa: E402
from sge_viz.dissect.summary import Partial  # noqa: E402
from sge_viz.io.feed import default_workers, item_loader, load_item  # noqa: E402
from sge_viz.io.images import open_image  # noqa: E402
from sge_viz.io.inputs import collect  # noqa: E402

BATCH = 8
SMALL, BIG = 40, 120
KEEP = "<!-- kept by bench/dissect.py: the notes below are written by hand -->"
# (target, lower is better)
TARGETS = {"per batch": (1.25, True), "per batch pictures": (1.25, True), "pictures": (1.25, True),
           "no-pictures": (1.25, True), "rss 3x": (1.05, True), "analyze pictures": (0.5, False),
           "analyze no-pictures": (0.9, False)}
CASES = {None: "bare pass", True: "dissect", False: "dissect --no-pictures"}
STAGES = ("read", "decode", "preprocess", "forward", "reductions", "merge", "save", "pictures drawn")


def make_jpegs(folder: Path, count: int, pil: Image.Image) -> None:
    """``count`` distinct 320x256 JPEGs: random crops (and flips) of the test photo, resized."""
    rng = np.random.default_rng(0)
    arr = np.asarray(pil)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h = int(rng.integers(arr.shape[0] // 2, arr.shape[0]))
        w = min(arr.shape[1], int(h * 1.25))
        y, x = rng.integers(0, arr.shape[0] - h + 1), rng.integers(0, arr.shape[1] - w + 1)
        crop = arr[y:y + h, x:x + w][:, ::-1 if i % 2 else 1]
        Image.fromarray(np.ascontiguousarray(crop)).resize((320, 256), Image.BILINEAR).save(
            folder / f"img_{i:03d}.jpg", quality=90)


def stage_profile(loaded, items, k: int = 9, save_every: int = 10) -> tuple[dict[str, float], dict[str, float]]:
    """Wall and CPU seconds per stage of one pass over ``items`` in this process (``run_local``'s loop,
    clocked; CPU: all this process's threads)."""
    times: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    cfg = loaded.config

    def clock(stage, fn, *args, **kwargs):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        times[stage] += time.perf_counter() - start
        cpu[stage] += time.process_time() - start_cpu
        return out

    tmp = Path(tempfile.mkdtemp(prefix="sge_bench_profile_"))
    try:
        total = Partial(k)
        for n, start in enumerate(range(0, len(items), BATCH), 1):
            chunk = items[start:start + BATCH]
            data = [clock("read", Path(i.path).read_bytes) for i in chunk]
            images = [clock("decode", open_image, d) for d in data]
            views = [clock("preprocess", center_crop_view, im, cfg.resize_size, cfg.input_size) for im in images]
            x = clock("preprocess", normalise_batch, views, cfg, loaded.device, loaded.dtype)
            start_fw, start_cpu = time.perf_counter(), time.process_time()
            # as queue_batch records: the group sums of SGE's input are taken in the hooks ("forward")
            with torch.inference_mode(), GateRecorder(loaded.model, keep_on_device=True,
                                                      output_sums=False) as recorder:
                loaded.model(x)
            times["forward"] += time.perf_counter() - start_fw
            cpu["forward"] += time.process_time() - start_cpu
            chosen = select_layers(recorder.layer_names, None)
            names = [i.name for i in chunk]
            queued = clock("reductions", QueuedReduction, recorder.captures, chosen, names, [None] * len(chunk), k,
                           views)
            partial = clock("reductions", queued.finish, total.floor())  # the pictures kept included
            clock("merge", total.absorb, partial)
            if n % save_every == 0 or start + BATCH >= len(items):
                clock("save", save_state, tmp / "state.npz", total, start + len(chunk), "bench")
        clock("pictures drawn", write_report, tmp / "report", total, loaded, items)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(times), dict(cpu)


def measure_child(cmd: list[str]) -> None:
    """Run ``cmd``; print as JSON its wall time, CPU time (all its processes), peak RSS (MB, the largest
    of its processes) and the pass's own clock (``seconds.pass`` of the command's JSON output)."""
    start = time.perf_counter()
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, text=True)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = json.loads(res.stdout)["seconds"]
    print(json.dumps({"seconds": elapsed, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "peak_rss_mb": usage.ru_maxrss / 1024, "pass_seconds": own["pass"],
                      "report_seconds": own.get("report", 0.0)}))


def bare_pass_seconds(loaded, items) -> float:
    """Seconds of the bare batched forward over ``items`` as ``run_local`` reads them (the same DataLoader,
    reading workers and batches of 8), nothing else."""

    cfg = loaded.config
    started = time.perf_counter()
    loader = item_loader(items, cfg, BATCH, default_workers(len(items)))
    with torch.inference_mode():
        for batch in loader:
            loaded.model(normalise_batch([f.view for f in batch], cfg, loaded.device, loaded.dtype))
    return time.perf_counter() - started


def bare_pass(folder: Path) -> None:
    """``bare_pass_seconds`` over ``folder`` with the CLI's network, in a fresh process; printed as the CLI's
    --json does."""
    from sge_viz.models.factory import create_model

    loaded = create_model("sge_resnet50", device="cpu", random_weights=True)
    print(json.dumps({"seconds": {"pass": bare_pass_seconds(loaded, collect([folder]).items)}}))


def paired_stream(loaded, items, state: Path) -> tuple[dict[bool | None, list[float]], dict[bool, float]]:
    """One pass over ``items`` as ``run_local`` reads them (the same DataLoader and reading workers, batches of
    8), where every batch goes, one right after the other, through the bare forward and through
    ``run_local``'s per-batch steps without and with pictures (``queue_batch``, ``finish`` against the
    running summary, ``absorb`` into it; each case keeps its own summary). Paired in time, the three see the
    same machine, so drift cancels batch by batch; the order rotates from batch to batch.

    Returns each case's seconds per batch (None: the bare forward) and the seconds of one save of each
    summary at the end (``save_state``, as the CLI writes its resumable state)."""
    from sge_viz.dissect.reduce import queue_batch

    cfg = loaded.config
    loader = item_loader(items, cfg, BATCH, default_workers(len(items)))
    totals = {False: Partial(9), True: Partial(9)}
    seconds: dict[bool | None, list[float]] = defaultdict(list)
    cases: list[bool | None] = [None, False, True]
    with torch.inference_mode():
        for n, batch in enumerate(loader):
            views, names = [f.view for f in batch], [items[f.index].name for f in batch]
            for case in cases[n % 3:] + cases[:n % 3]:
                started = time.perf_counter()
                if case is None:
                    loaded.model(normalise_batch(views, cfg, loaded.device, loaded.dtype))
                else:
                    queued = queue_batch(loaded, views, names, [None] * len(views), 9, pictures=case)
                    totals[case].absorb(queued.finish(totals[case].floor()))
                seconds[case].append(time.perf_counter() - started)
    saves = {}
    for case, total in totals.items():
        started = time.perf_counter()
        save_state(state, total, len(items), "bench")
        saves[case] = time.perf_counter() - started
    return seconds, saves


def resolution(ratios: list[float]) -> tuple[float, float]:
    """(median, 2 standard errors of the mean) of per-round ratios."""
    spread = 2 * statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("inf")
    return statistics.median(ratios), spread


def dissect_cli(folder: Path, out: Path, pictures: bool | None) -> dict:
    """One fresh process over ``folder``: ``sge-viz dissect`` (default options, ``--json``), or with
    ``pictures=None`` the bare pass (``bare_pass``); its ``measure_child`` numbers."""
    if pictures is None:
        cmd = [sys.executable, __file__, "--bare-pass", str(folder)]
    else:
        cmd = [sys.executable, "-m", "sge_viz", "dissect", str(folder), "--model", "sge_resnet50",
               "--random-weights", "--out", str(out), "--device", "cpu", "--json"] + ([] if pictures else
                                                                                      ["--no-pictures"])
    res = subprocess.run([sys.executable, __file__, "--measure-child", *cmd], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3, help="rounds of the CLI cases in fresh processes (default 3)")
    p.add_argument("--stream-rounds", type=int, default=5,
                   help="paired passes over the 120 JPEGs in this process (default 5)")
    p.add_argument("--batch-rounds", type=int, default=5, help="interleaved rounds per batch case (default 5)")
    p.add_argument("--with-analyze", action="store_true", help="also measure `sge-viz analyze` (+3 minutes)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "DISSECT.md")
    p.add_argument("--measure-child", nargs=argparse.REMAINDER)
    p.add_argument("--bare-pass", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure_child:
        measure_child(args.measure_child)
        return 0
    if args.bare_pass:
        bare_pass(args.bare_pass)
        return 0
    started = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    pil = base.test_image()
    tmp = Path(tempfile.mkdtemp(prefix="sge_bench_dissect_"))
    rows, notes = [], []
    try:
        make_jpegs(tmp / "small", SMALL, pil)
        make_jpegs(tmp / "big", BIG, pil)
        loaded, label = base.resnet50("cpu")
        cfg = loaded.config
        items = collect([tmp / "small"]).items
        views = [load_item(i, cfg.resize_size, cfg.input_size).view for i in items[:BATCH]]
        names = [i.name for i in items[:BATCH]]

        def bare():
            x = torch.stack([normalise(v, cfg) for v in views])
            with torch.inference_mode():
                loaded.model(x)

        # 1. stages
        times, cpus = stage_profile(loaded, items)
        whole, whole_cpu = sum(times.values()), sum(cpus.values())
        lines = ["| stage | wall per image | share | CPU per image | share |", "|---|---|---|---|---|"]
        for stage in STAGES:
            wall, cpu = times.get(stage, 0.0), cpus.get(stage, 0.0)
            lines.append(f"| {stage} | {wall / len(items) * 1000:.1f} ms | {wall / whole:.1%} | "
                         f"{cpu / len(items) * 1000:.1f} ms | {cpu / whole_cpu:.1%} |")
            print(f"stage {stage:15s} {wall / len(items) * 1000:7.1f} ms/image, CPU {cpu / len(items) * 1000:7.1f}",
                  flush=True)
        notes.append(f"Where the time goes: one pass over the {SMALL} images in this process, no reading "
                     f"workers, with pictures ({whole:.1f} s in all; reading, decoding and preprocessing run in "
                     "worker processes in the CLI):\n\n" + "\n".join(lines))

        # 2. per batch
        rest = run_local(loaded, items[BATCH:], 9, batch_size=BATCH)  # the summary a running pass merges into
        floor = rest.floor()

        def dissect_plain():
            dissect_batch(loaded, views, names, [None] * BATCH, 9)

        def dissect_pictures():
            dissect_batch(loaded, views, names, [None] * BATCH, 9, pictures=True, floor=floor)

        walls: dict[str, list[float]] = defaultdict(list)
        cpus_b: dict[str, list[float]] = defaultdict(list)
        cases = {"bare": bare, "plain": dissect_plain, "pictures": dissect_pictures}
        for r in range(args.batch_rounds + 1):  # interleaved; the first round warms up
            for case, fn in cases.items():
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                if r:
                    walls[case].append(time.perf_counter() - wall)
                    cpus_b[case].append(time.process_time() - cpu)
        bare_s, bare_cpu = statistics.median(walls["bare"]), statistics.median(cpus_b["bare"])
        for key, case, text in (("per batch", "plain", "dissect_batch, no pictures"),
                                ("per batch pictures", "pictures", "dissect_batch with pictures, merged into "
                                                                   f"{SMALL - BATCH} images' summary")):
            wall, cpu = statistics.median(walls[case]), statistics.median(cpus_b[case])
            rows.append((f"{text}: time per image vs bare batched forward (batch of 8)", key, wall / bare_s,
                         f"{wall / BATCH * 1000:.1f} vs {bare_s / BATCH * 1000:.1f} ms/image; CPU time "
                         f"{cpu / BATCH * 1000:.1f} vs {bare_cpu / BATCH * 1000:.1f} ms/image = {cpu / bare_cpu:.3f}x"))
            print("measured", rows[-1], flush=True)

        # 3. end to end, marginal per image (SMALL -> BIG JPEGs) against the bare pass over the same JPEGs.
        # 3a. The target rows, in this process (the model loaded once): the cost of images SMALL+1..BIG given
        # the first SMALL, i.e. (t(BIG) - t(SMALL)) / (BIG - SMALL), from batches paired in time with the
        # bare forward (see paired_stream).
        big_items = collect([tmp / "big"]).items
        first = SMALL // BATCH  # batches of the first SMALL images
        marginal: dict[bool | None, list[float]] = defaultdict(list)
        save_seconds: dict[bool, list[float]] = defaultdict(list)
        for r in range(args.stream_rounds):
            seconds, saves = paired_stream(loaded, big_items, tmp / "state.npz")
            for case, values in seconds.items():
                marginal[case].append(sum(values[first:]) / (BIG - SMALL))
            for case, value in saves.items():
                save_seconds[case].append(value)
            print(f"stream round {r}: " + ", ".join(f"{CASES[c]} {marginal[c][-1] * 1000:.1f} ms/image"
                                                    for c in (None, True, False)), flush=True)
        rate = 1 / statistics.median(marginal[None])  # images/s of the bare forward, to amortise the saves
        for pictures, key in ((True, "pictures"), (False, "no-pictures")):
            ratios = [m / b for m, b in zip(marginal[pictures], marginal[None])]
            ratio, spread = resolution(ratios)
            save = statistics.median(save_seconds[pictures])
            # The CLI saves every 10 batches, at most once every SAVE_SECONDS: in a long run one save per
            # max(80 images, SAVE_SECONDS of images); between 40 and 120 images both runs save once, at the end.
            amortised = save / max(10 * BATCH, SAVE_SECONDS * rate / ratio) / statistics.median(marginal[None])
            rows.append((f"dissect {'with pictures' if pictures else '--no-pictures'}, per image over JPEGs "
                         f"{SMALL + 1}-{BIG} (the marginal {SMALL} -> {BIG}), run_local's steps paired batch by batch "
                         "with the bare batched forward over the same reading pipeline", key, ratio,
                         f"{statistics.median(marginal[pictures]) * 1000:.1f} vs "
                         f"{statistics.median(marginal[None]) * 1000:.1f} ms/image; {len(ratios)} rounds "
                         + ", ".join(f"{x:.3f}" for x in ratios) + f", mean {statistics.mean(ratios):.3f}x +- "
                         f"{spread:.3f} (2 SE); in a long run the saved state adds {amortised:.3f}x "
                         f"({save:.2f} s per save)"))
            print("measured", rows[-1], flush=True)

        # 3b. The CLI (fresh processes): the same marginal with start-up and report, and peak RSS.
        runs: dict[tuple[bool | None, int], list[dict]] = defaultdict(list)
        for r in range(args.rounds):  # fresh processes, for RSS and the start-up/report picture (notes)
            for pictures in (None, True, False):
                for size, folder in ((SMALL, tmp / "small"), (BIG, tmp / "big")):
                    res = dissect_cli(folder, tmp / "out", pictures)
                    runs[(pictures, size)].append(res)
                    print(f"round {r} {CASES[pictures]} {size} images: {res['seconds']:.1f} s (pass "
                          f"{res['pass_seconds']:.2f} s, report {res['report_seconds']:.1f} s), "
                          f"{res['cpu_seconds']:.1f} s CPU, {res['peak_rss_mb']:.0f} MB", flush=True)

        def margins(case: bool | None, field: str) -> list[float]:
            return [(b[field] - s[field]) / (BIG - SMALL) for s, b in zip(runs[(case, SMALL)], runs[(case, BIG)])]

        for pictures in (True, False):
            parts = []
            for field, what in (("pass_seconds", "the pass"), ("seconds", "the whole process")):
                ratios = [m / b for m, b in zip(margins(pictures, field), margins(None, field))]
                parts.append(f"{what} {statistics.median(ratios):.2f}x (rounds "
                             + ", ".join(f"{x:.2f}" for x in ratios) + ")")
            reports = [statistics.median(x["report_seconds"] for x in runs[(pictures, n)]) for n in (SMALL, BIG)]
            notes.append(f"`sge-viz dissect{'' if pictures else ' --no-pictures'}` in fresh processes, marginal per "
                         f"image vs the bare pass's ({args.rounds} rounds; process-to-process noise, not a target "
                         f"row): {'; '.join(parts)}; report {reports[0]:.1f} s ({SMALL} images) vs {reports[1]:.1f} s "
                         f"({BIG}).")
            print(notes[-1], flush=True)
        r_small = statistics.median(x["peak_rss_mb"] for x in runs[(True, SMALL)])
        r_big = statistics.median(x["peak_rss_mb"] for x in runs[(True, BIG)])
        rows.append((f"peak RSS of sge-viz dissect (pictures), {BIG} vs {SMALL} images", "rss 3x", r_big / r_small,
                     f"{r_big:.0f} vs {r_small:.0f} MB"))
        r_small = statistics.median(x["peak_rss_mb"] for x in runs[(False, SMALL)])
        r_big = statistics.median(x["peak_rss_mb"] for x in runs[(False, BIG)])
        notes.append(f"Peak RSS with --no-pictures: {r_big:.0f} MB for {BIG} images vs {r_small:.0f} MB for {SMALL} "
                     f"({r_big / r_small:.3f}x).")

        if args.with_analyze:
            threads = torch.get_num_threads()
            for pictures, key in ((True, "analyze pictures"), (False, "analyze no-pictures")):
                res = base.batch_throughput(pil, 48, BATCH, 2, threads, args.batch_rounds, repeats=3,
                                            pictures=pictures)
                rows.append((f"sge-viz analyze {'(pictures)' if pictures else '--no-pictures'}: marginal "
                             "throughput vs bare batched forward", key, res["ratio"],
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
        limit, lower = TARGETS[key]
        met = ratio <= limit if lower else ratio >= limit
        sign = "<=" if lower else ">="
        lines.append(f"| {text} | {ratio:.3f}x | {sign} {limit}x | {'yes' if met else 'NO'} | {numbers} |")
        print(f"{text}: {ratio:.3f}x (target {sign} {limit}x) {numbers}")
    lines += ["", *("\n" + n for n in notes)]
    # Hand-written notes below the marker (analysis, Figs. 2-4) survive a rerun.
    kept = args.out.read_text(encoding="utf-8").partition(KEEP)[2] if args.out.is_file() else ""
    args.out.write_text("\n".join(lines) + "\n" + (f"\n{KEEP}{kept}" if kept else ""), encoding="utf-8")
    print(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
