"""The speed and memory benchmark: ``python bench/run.py`` (about 2 to 4 minutes on 2 CPU cores).

Everything that is compared is measured in one process, on the same image and
model, in interleaved rounds (each round runs every case once, in turn), and
reported as medians and as ratios to the bare forward of the same rounds, so a
busy machine slows all cases alike. Cases, per model (the shipped demo model and
sge_resnet50 at 224 with random weights):

- bare forward: ``model(x)``, batch 1, no hooks
- recorder: the same forward inside ``GateRecorder`` (gates + group activations); and with
  ``activations=False`` (gates and their check only)
- gate check: the recorder's check of y = x * gate, timed inside hooks on every SGE layer of a forward
  (and, as a cross-check, the difference of two forwards with hooks, group sums alone and group sums + check,
  paired round by round)
- full analysis: ``analyze`` (preprocess, forward, capture) + stats of every
  layer + the app's mosaic of every layer + the focused views of one group
- re-render: what the app does on a group change (mosaic + focused views) and on
  a layer change (also the group table and the histogram, drawn to PNG), from
  the cached analysis, no forward
- GradCAM: pytorch-grad-cam on the last residual block (forward + backward)
- app request: ``/analyze`` through gradio_client against the app on localhost
- page: new image: the page's event for a new image (forward and every picture; the Statistics tab closed,
  as the page opens), in process

Then: peak RSS of a fresh process that loads sge_resnet50 and runs one full
analysis, and the throughput of ``sge-viz analyze FOLDER`` against the bare
batched forward. Results go to bench/RESULTS.md (``--out`` to change).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import io
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sge_viz import viz as render  # noqa: E402
from sge_viz.app import views as svc  # noqa: E402
from sge_viz.app.catalogue import ModelService  # noqa: E402
from sge_viz.capture.analysis import analyze  # noqa: E402
from sge_viz.capture.preprocess import prepare  # noqa: E402
from sge_viz.capture.recorder import (  # noqa: E402
    GateRecorder,
    check_gate,
    find_gate,
    find_sge_layers,
    group_sums,
)
from sge_viz.metrics import gates as stats  # noqa: E402
from sge_viz.models import LoadedModel, create_model, save_safetensors  # noqa: E402
from sge_viz.models.config import ModelConfig  # noqa: E402
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS, build_model  # noqa: E402
from sge_viz.resources import demo_checkpoint  # noqa: E402
from sge_viz.viz.figures import histogram_figure  # noqa: E402

TARGETS = {  # (case, limit, against): the project's targets, CPU, sge_resnet50 at 224, batch 1
    "recorder": (1.03, "bare forward"),
    "gate check (every SGE layer)": (0.03, "bare forward"),
    "full analysis": (1.5, "bare forward"),
    "re-render (group)": (0.25, "bare forward"),
    "full vs GradCAM": (0.5, "GradCAM"),
    "app request": (2.5, "bare forward"),
}
RSS_LIMIT_MB = 1200
BATCH_LIMIT = 0.8


# --- inputs -----------------------------------------------------------------------------

def test_image() -> Image.Image:
    """A natural photo shipped with scikit-image (no download), else a smooth synthetic scene."""
    try:
        import skimage.data

        return Image.fromarray(skimage.data.astronaut())
    except Exception:  # noqa: BLE001 - any failure: fall back to pixels made here
        y, x = np.mgrid[0:512, 0:512] / 512.0
        rgb = np.stack([np.sin(7 * x) * 0.5 + 0.5, np.cos(5 * y) * 0.5 + 0.5, x * y], -1)
        return Image.fromarray((rgb * 255).astype(np.uint8))


def vary_sge(model: torch.nn.Module, seed: int = 0) -> None:
    """Random SGE weights, so untrained gates vary over the image as trained ones do (init gives flat gates)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("sge.weight", "sge.bias")):
                p.copy_(torch.randn(p.shape, generator=gen))


def demo_model(device: str) -> tuple[LoadedModel, str]:
    """The shipped demo checkpoint, or (while it is missing) the demo architecture with random weights."""
    if demo_checkpoint().is_file():
        return create_model(DEMO_ARCH, device=device), f"{DEMO_ARCH} (shipped checkpoint)"
    config = ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=64, resize_size=64,
                         class_names=tuple(f"class {i}" for i in range(10)), arch_kwargs=dict(DEMO_KWARGS))
    model, config = build_model(DEMO_ARCH, config)
    vary_sge(model)
    model = model.to(device).eval().requires_grad_(False)
    note = f"{DEMO_ARCH} (checkpoint missing: demo architecture, random weights)"
    return LoadedModel(model, config, note, "random weights", torch.device(device)), note


def resnet50(device: str) -> tuple[LoadedModel, str]:
    loaded = create_model("sge_resnet50", device=device, random_weights=True)
    vary_sge(loaded.model)
    return loaded, "sge_resnet50 (random weights)"


# --- timing ---------------------------------------------------------------------------------

@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)
    inside: dict[str, list[float]] = field(default_factory=dict)  # time spent inside hooks, per forward

    def median(self, case: str) -> float:
        return statistics.median(self.samples[case])

    def minimum(self, case: str) -> float:
        return min(self.samples[case])

    def paired(self, case: str, base: str) -> float:
        """The median over rounds of (case - base), each round's two runs taken back to back."""
        return statistics.median(a - b for a, b in zip(self.samples[case], self.samples[base]))


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2,
                sync: Callable[[], None] = lambda: None) -> Timings:
    """Each round runs every case once, in turn; the first ``warmup`` rounds are discarded."""
    out = Timings({name: [] for name in cases})
    for r in range(warmup + rounds):
        for name, fn in cases.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if r >= warmup:
                out.samples[name].append(time.perf_counter() - start)
    return out


# --- the cases ------------------------------------------------------------------------------

def full_analysis(loaded: LoadedModel, pil: Image.Image, cmap: str = "inferno", alpha: float = 0.5):
    """What one image costs end to end in the library: forward + capture, every statistic and picture."""
    analysis = analyze(loaded, pil)
    summary = stats.analysis_stats(analysis)
    deepest = analysis.layers[-1]
    group = svc.most_selective(deepest)
    # The app's mosaic (svc.render_mosaic) of every layer, drawn on a few threads by render.mosaics.
    mosaics = render.mosaics(svc.view_image(analysis), [lg.gate for lg in analysis.layers],
                             [svc.group_order(lg, svc.Order.SELECTIVE) for lg in analysis.layers],
                             [group if lg is deepest else None for lg in analysis.layers],
                             cmap=cmap, alpha=alpha, tile=svc.mosaic_tile(deepest.groups))
    views = svc.render_focus(analysis, deepest.name, group, cmap, alpha)
    return analysis, summary, mosaics, views


def rerender_group(analysis, layer: str, group: int, cmap: str = "inferno", alpha: float = 0.5):
    """The app's group change (app.handlers.Handlers.change_view): focused views + the mosaic with its frame."""
    views = svc.render_focus(analysis, layer, group, cmap, alpha)
    return views, svc.render_mosaic(analysis, layer, svc.Order.SELECTIVE, cmap, alpha, focus=group)


def rerender_layer(analysis, layer: str, cmap: str = "inferno", alpha: float = 0.5):
    """The app's layer change (app.handlers.Handlers.change_layer): also the group table and the histogram as PNG."""
    group = svc.most_selective(analysis.layer(layer))
    out = rerender_group(analysis, layer, group, cmap, alpha)
    svc.group_table(analysis, layer)
    fig = histogram_figure(analysis, layer)
    fig.savefig(io.BytesIO(), format="png")  # Gradio draws the figure to PNG for the page
    return out


def gradcam_case(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """pytorch-grad-cam as a user would run it: a model whose parameters require grad, the last block."""
    from pytorch_grad_cam import GradCAM

    model = copy.deepcopy(model).requires_grad_(True).eval()
    stage = getattr(model, f"layer{model.num_stages}")
    target = [stage[-1]]

    def run():
        with GradCAM(model=model, target_layers=target) as cam:
            return cam(input_tensor=x, targets=None)
    return run


class App:
    """The Gradio app serving the benchmark's models from a temporary checkpoint folder."""

    def __init__(self, models: dict[str, LoadedModel]):
        from gradio_client import Client

        from sge_viz.app.layout import build_ui, launch

        self.folder = Path(tempfile.mkdtemp(prefix="sge_bench_app_"))
        for key, loaded in models.items():
            save_safetensors(loaded.model, loaded.config, self.folder / f"{key}.safetensors")
        self.service = ModelService(device=str(next(iter(models.values())).device), checkpoint_dir=self.folder)
        self.labels = {}
        for key in models:
            self.labels[key] = next(c for c in self.service.choices if f"{key}.safetensors" in c)
            self.service.get(self.labels[key])
        self.demo = build_ui(self.service)
        port = _free_port()
        launch(self.demo, host="127.0.0.1", port=port, prevent_thread_lock=True)
        # Plain HTTP on localhost, so there is no certificate to verify; with ssl_verify left on,
        # gradio_client builds a TLS context (loading the CA bundle, ~15 ms) for every upload, stream
        # and download of every request, which would be timed as if it were the app's work.
        self.client = Client(f"http://127.0.0.1:{port}/", verbose=False, ssl_verify=False)
        self.image = self.folder / "image.png"

    def new_image(self, key: str, image: Path) -> Callable[[], object]:
        """The page's own event for a new image (``Handlers.show_image``, in this process) as the page opens,
        with the Statistics sub-tab closed (its two plots are drawn when it is opened): what a visitor waits for
        after dropping an image, less the transfer."""
        from sge_viz.app.settings import ViewSettings

        handlers, label = self.demo.handlers, self.labels[key]

        def run():
            return handlers.show_image(str(image), label, ViewSettings(), None, False, False)
        return run

    def request(self, key: str, image: Path) -> Callable[[], object]:
        from gradio_client import handle_file

        label = self.labels[key]

        def run():
            return self.client.predict(handle_file(str(image)), label, "", -1, "inferno", 0.5, api_name="/analyze")
        return run

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass
        self.demo.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_model(loaded: LoadedModel, pil: Image.Image, rounds: int, app: App | None, app_key: str,
                image_path: Path | None, with_gradcam: bool = True) -> tuple[Timings, dict]:
    x, _ = prepare(pil, loaded.config)
    x = x.to(loaded.device, loaded.dtype)
    model = loaded.model
    sync = torch.cuda.synchronize if loaded.device.type == "cuda" else (lambda: None)

    spent: list[float] = []  # the gate check's seconds inside the hooks, per forward

    def bare():
        with torch.inference_mode():
            return model(x)

    def recorder(activations: bool = True):
        with torch.inference_mode(), GateRecorder(model, activations=activations) as rec:
            model(x)
        return rec

    analysis = full_analysis(loaded, pil)[0]
    deepest = analysis.layers[-1]
    groups = [int(g) for g in stats.selectivity_order(deepest.gate)]
    layers = analysis.layer_names
    turn = {"group": 0, "layer": 0}

    def group_switch():
        turn["group"] += 1
        return rerender_group(analysis, deepest.name, groups[turn["group"] % len(groups)])

    def layer_switch():
        turn["layer"] += 1
        return rerender_layer(analysis, layers[turn["layer"] % len(layers)])

    cases: dict[str, Callable[[], object]] = {
        "bare forward": bare,
        "recorder": recorder,
        GATES_ONLY: lambda: recorder(activations=False),
        **gate_check_cases(model, x, spent),
        "analyze (preprocess + forward + capture)": lambda: analyze(loaded, pil),
        "full analysis": lambda: full_analysis(loaded, pil),
        "re-render (group)": group_switch,
        "re-render (layer)": layer_switch,
    }
    if with_gradcam:
        cases["GradCAM"] = gradcam_case(model, x)
    if app is not None and image_path is not None:
        cases["app request"] = app.request(app_key, image_path)
        cases["page: new image"] = app.new_image(app_key, image_path)
    info = {"layers": len(layers), "input": loaded.config.input_size,
            "groups": int(deepest.groups), "params": loaded.num_parameters}
    timings = interleaved(cases, rounds, sync=sync)
    timings.inside[CHECK] = spent[-rounds:]  # the warm-up rounds' are dropped, as interleaved drops their times
    return timings, info


GATES_ONLY = "recorder, gates only (activations=False)"
SUMS_CASE = "forward, group sums in hooks"
CHECK_CASE = "forward, group sums + gate check in hooks"
CHECK = "gate check (every SGE layer)"  # timed inside the hooks of the second case


def gate_check_cases(model: torch.nn.Module, x: torch.Tensor, spent: list[float]) -> dict[str, Callable[[], object]]:
    """Two forwards with hooks on every SGE layer: one takes the input's group sums (as the recorder does),
    the other also runs the recorder's check on each call (``find_gate`` + ``check_gate``: y = x * gate on every
    channel, through the group sums). The second appends to ``spent`` the seconds its checks took inside the
    hooks, summed over the forward: the check's cost where the recorder pays it, right after each module ran.
    The two forwards' difference, paired round by round, counts also what the check does to the cache of the
    layers after it, but moves by several ms from run to run on a 2-core machine."""
    def forward(check: bool) -> Callable[[], object]:
        def run():
            handles, total = [], [0.0]
            for _name, module in find_sge_layers(model):
                kept: dict = {}
                handles.append(module.sig.register_forward_hook(lambda _m, _i, out, k=kept: k.__setitem__("g", out)))
                handles.append(module.register_forward_hook(
                    lambda m, i, out, k=kept: after_call(i[0], out, k["g"], m.groups, total if check else None)))
            try:
                with torch.inference_mode():
                    return model(x)
            finally:
                for handle in handles:
                    handle.remove()
                if check:
                    spent.append(total[0])
        return run

    def after_call(xin, out, gate, groups, total):
        x_sum, _ = group_sums(xin, groups)
        if total is not None:
            start = time.perf_counter()
            found, why = check_gate(xin, out, find_gate(xin, out, [gate], groups)[0], x_sum)
            total[0] += time.perf_counter() - start
            assert found is not None, why

    return {SUMS_CASE: forward(False), CHECK_CASE: forward(True)}


# --- peak RSS in a fresh process ------------------------------------------------------------

def rss_child() -> None:
    """Load sge_resnet50, run one full analysis, print peak RSS (MB) as JSON."""
    import psutil

    loaded, _ = resnet50("cpu")
    full_analysis(loaded, test_image())
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "rss_now_mb": psutil.Process().memory_info().rss / 2**20}))


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child
    started by fork would report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; other systems: approximate


def measure_rss(threads: int) -> dict:
    env = dict(os.environ, BENCH_THREADS=str(threads))
    out = subprocess.run([sys.executable, str(Path(__file__)), "--rss-child"], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- batch CLI throughput ------------------------------------------------------------------

def make_folder(folder: Path, n: int, pil: Image.Image) -> None:
    """n distinct JPEGs (random crops and flips of the test photo)."""
    rng = np.random.default_rng(0)
    arr = np.asarray(pil)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        side = int(rng.integers(300, arr.shape[0]))
        y, x = rng.integers(0, arr.shape[0] - side + 1), rng.integers(0, arr.shape[1] - side + 1)
        crop = arr[y:y + side, x:x + side]
        if i % 2:
            crop = crop[:, ::-1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"img_{i:03d}.jpg", quality=90)


def run_cli(folder: Path, out: Path, batch: int, workers: int, threads: int,
            pictures: bool = True) -> tuple[float, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "sge_viz", "analyze", str(folder), "--model", "sge_resnet50", "--random-weights",
           "--batch-size", str(batch), "--workers", str(workers), "--out", str(out), "--json", "--device", "cpu"]
    if not pictures:
        cmd.append("--no-pictures")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"sge-viz analyze failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)  # all its processes and threads
    return elapsed, cpu


def batch_throughput(pil: Image.Image, images: int, batch: int, workers: int, threads: int,
                     rounds: int, repeats: int = 2, pictures: bool = True) -> dict:
    """Marginal images/s of the CLI (difference of a large and a small folder cancels start-up and model
    build) against the bare batched forward of sge_resnet50 at the same batch size, timed just before and
    just after each pair of CLI runs (the load of a shared machine drifts over a minute); the ratio is
    the median over ``repeats`` such brackets."""
    tmp = Path(tempfile.mkdtemp(prefix="sge_bench_cli_"))
    try:
        big, small = tmp / "big", tmp / "small"
        make_folder(big, images, pil)
        make_folder(small, batch, pil)
        loaded, _ = resnet50("cpu")
        x = prepare(pil, loaded.config)[0].repeat(batch, 1, 1, 1)

        cpu_per_image = []

        def bare_ips() -> float:
            def bare():
                with torch.inference_mode():
                    loaded.model(x)
            cpu = time.process_time()
            ips = batch / interleaved({"bare batch": bare}, 3, warmup=1).median("bare batch")
            cpu_per_image.append((time.process_time() - cpu) / (4 * batch))  # 1 warm-up + 3 timed
            return ips

        runs = []
        for r in range(repeats):
            before = bare_ips()
            t_small, c_small = run_cli(small, tmp / f"out_small{r}", batch, workers, threads, pictures)
            t_big, c_big = run_cli(big, tmp / f"out_big{r}", batch, workers, threads, pictures)
            after = bare_ips()
            cli_ips = (images - batch) / max(t_big - t_small, 1e-9)
            cli_cpu = (c_big - c_small) / (images - batch)
            runs.append({"cli_seconds": t_big, "cli_small_seconds": t_small, "cli_raw_ips": images / t_big,
                         "cli_ips": cli_ips, "bare_ips": (before + after) / 2,
                         "ratio": cli_ips / ((before + after) / 2),
                         "cli_cpu_per_image": cli_cpu, "bare_cpu_per_image": statistics.mean(cpu_per_image[-2:]),
                         "cpu_ratio": statistics.mean(cpu_per_image[-2:]) / cli_cpu})
        best = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2] if len(runs) % 2 else None
        out = dict(best) if best else {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
        out.update({"images": images, "batch": batch, "workers": workers, "pictures": pictures,
                    "ratios": [round(r["ratio"], 3) for r in runs]})
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- report ------------------------------------------------------------------------------------

def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "load": [round(v, 2) for v in load]}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def model_table(name: str, note: str, t: Timings, info: dict) -> list[str]:
    bare = t.median("bare forward")
    lines = [f"### {note}", "",
             f"{info['layers']} SGE layers, input {info['input']}x{info['input']}, {info['params']:,} parameters, "
             f"{len(t.samples['bare forward'])} interleaved rounds.", "",
             "| case | median ms | min ms | x bare forward |", "| --- | ---: | ---: | ---: |"]
    for case in t.samples:
        lines.append(f"| {case} | {fmt_ms(t.median(case))} | {fmt_ms(t.minimum(case))} | "
                     f"{t.median(case) / bare:.3f} |")
    if CHECK in t.inside:
        inside = t.inside[CHECK]
        lines.append(f"| {CHECK}: timed inside the hooks of the case above | {fmt_ms(statistics.median(inside))} | "
                     f"{fmt_ms(min(inside))} | {statistics.median(inside) / bare:.3f} |")
        check = t.paired(CHECK_CASE, SUMS_CASE)
        lines.append(f"| the same, as the two cases above paired by round (also what it does to the cache; "
                     f"+/- several ms) | {fmt_ms(check)} | | {check / bare:.3f} |")
    if "GradCAM" in t.samples:
        lines.append(f"| full analysis / GradCAM | | | {t.median('full analysis') / t.median('GradCAM'):.3f} "
                     "(x GradCAM) |")
    split = t.median("analyze (preprocess + forward + capture)")
    lines += ["", f"Split of the full analysis: preprocessing + capture add {(split - bare) * 1000:.1f} ms "
              f"({(split - bare) / bare:.3f}x) to the bare forward; statistics, {info['layers']} mosaics and the focused views "
              f"{(t.median('full analysis') - split) * 1000:.1f} ms ({(t.median('full analysis') - split) / bare:.3f}x)."]
    return lines + [""]


def target_rows(t: Timings, rss: dict | None, batches: list[dict]) -> list[tuple[str, str, str, bool]]:
    bare = t.median("bare forward")
    rows = []
    for case, (limit, against) in TARGETS.items():
        if case == "full vs GradCAM":
            if "GradCAM" not in t.samples:
                continue
            value = t.median("full analysis") / t.median("GradCAM")
            rows.append(("full analysis vs GradCAM", f"<= {limit}x GradCAM", f"{value:.3f}x", value <= limit))
        elif case == CHECK and CHECK in t.inside:
            value = statistics.median(t.inside[CHECK]) / bare
            rows.append((case, f"<= {limit}x {against}", f"{value:.3f}x", value <= limit))
        elif case in t.samples:
            value = t.median(case) / bare
            rows.append((case, f"<= {limit}x {against}", f"{value:.3f}x", value <= limit))
    if rss is not None:
        rows.append(("peak RSS (load + one full analysis)", f"<= {RSS_LIMIT_MB} MB", f"{rss['peak_rss_mb']:.0f} MB",
                     rss["peak_rss_mb"] <= RSS_LIMIT_MB))
    for batch in batches:
        kind = _batch_kind(batch)
        rows.append((f"batch CLI throughput, {kind} (wall clock)", f">= {BATCH_LIMIT}x bare batched forward",
                     f"{batch['ratio']:.3f}x", batch["ratio"] >= BATCH_LIMIT))
        rows.append((f"batch CLI, {kind}, CPU time per image (what an idle machine would show)",
                     f">= {BATCH_LIMIT}x bare batched forward", f"{batch['cpu_ratio']:.3f}x",
                     batch["cpu_ratio"] >= BATCH_LIMIT))
    return rows


def _batch_kind(batch: dict) -> str:
    return "with pictures" if batch["pictures"] else "--no-pictures"


def write_results(path: Path, mach: dict, sections: list[str], targets, rss, batches: list[dict], elapsed: float,
                  notes: list[str]) -> None:
    lines = ["# Benchmark results", "",
             f"Written by `python bench/run.py` on {mach['date']} in {elapsed:.0f} s.", "",
             f"- CPU: {mach['cpu']}, {mach['cores']} cores; torch {mach['torch']} with "
             f"{mach['threads']} intra-op threads; numpy {mach['numpy']}; Python {mach['python']}",
             f"- load average at the end of the run: {mach['load']} (other work on the machine slows every "
             "case; the ratios are what to compare, all from the same interleaved rounds)", ""]
    lines += [f"- {n}" for n in notes] + [""]
    lines += ["## Targets (sge_resnet50 at 224, batch 1, CPU)", "", "| target | limit | measured | met |",
              "| --- | --- | ---: | :---: |"]
    lines += [f"| {a} | {b} | {c} | {'yes' if ok else 'NO'} |" for a, b, c, ok in targets]
    lines += ["", "## Per model", ""] + sections
    if rss is not None:
        lines += ["## Memory", "",
                  f"A fresh process that builds sge_resnet50 and runs one full analysis peaks at "
                  f"{rss['peak_rss_mb']:.0f} MB RSS (VmHWM), {rss['rss_now_mb']:.0f} MB at the end.", ""]
    for batch in batches:
        written = ("gates.npz, stats.json, 16 mosaics and an overlay" if batch["pictures"]
                   else "gates.npz and stats.json only")
        lines += [f"## Batch CLI, {_batch_kind(batch)}", "",
                  f"`sge-viz analyze FOLDER --model sge_resnet50 --random-weights --batch-size {batch['batch']} "
                  f"--workers {batch['workers']}{'' if batch['pictures'] else ' --no-pictures'}` on {batch['images']} JPEGs: {batch['cli_seconds']:.1f} s "
                  f"({batch['cli_raw_ips']:.2f} images/s including start-up and model build); marginal throughput "
                  f"(difference to a {batch['batch']}-image folder, which cancels start-up) "
                  f"{batch['cli_ips']:.2f} images/s, each image written as {written}. Bare batched forward at batch {batch['batch']}: {batch['bare_ips']:.2f} "
                  f"images/s. Ratio {batch['ratio']:.3f} (combined from {len(batch['ratios'])} brackets of bare-forward timings around the CLI runs: {batch['ratios']}).", "",
                  f"CPU time per image (all processes and threads): CLI {batch['cli_cpu_per_image']:.3f} s, bare "
                  f"batched forward {batch['bare_cpu_per_image']:.3f} s, ratio {batch['cpu_ratio']:.3f}. On a busy "
                  "machine the wall-clock ratio flatters the CLI: its extra threads (image loading, writing) take a "
                  "larger share of the cores from other processes than the bare forward's threads do. The CPU-time "
                  "ratio is what an otherwise idle machine of the same cores would show.", ""]
    extra = ROOT / "bench" / "NOTES.md"
    if extra.is_file():
        lines += [extra.read_text(encoding="utf-8").strip(), ""]
    gpu = ROOT / "bench" / "GPU.md"
    if gpu.is_file():
        lines += [gpu.read_text(encoding="utf-8").strip(), ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timed rounds per model (default 15)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice, one per core)")
    parser.add_argument("--images", type=int, default=64, help="images in the batch CLI folder (default 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size for the CLI and batched forward")
    parser.add_argument("--workers", type=int, default=2, help="CLI image-loading workers (default 2)")
    parser.add_argument("--skip-app", action="store_true", help="leave out the gradio_client request")
    parser.add_argument("--skip-batch", action="store_true", help="leave out the batch CLI throughput")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the peak-RSS process")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md", help="results file")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = args.threads or int(os.environ.get("BENCH_THREADS", 0)) or torch.get_num_threads()
    torch.set_num_threads(threads)
    if args.rss_child:
        rss_child()
        return 0

    started = time.perf_counter()
    pil = test_image()
    notes = [f"Test image: scikit-image's astronaut photo ({pil.size[0]}x{pil.size[1]}), resized and centre-cropped "
             "to each model's input. Random-weight models get random SGE weights so that gates vary."]
    models = {"demo": demo_model("cpu"), "resnet50": resnet50("cpu")}
    notes.append(f"Demo model: {models['demo'][1]}.")
    app = None
    image_path = None
    if not args.skip_app:
        app = App({k: v[0] for k, v in models.items()})
        image_path = app.folder / "image.png"
        pil.save(image_path)
    sections, results = [], {}
    try:
        for key, (loaded, note) in models.items():
            print(f"== {note}", flush=True)
            t, info = bench_model(loaded, pil, args.rounds, app, key, image_path)
            results[key] = t
            bare = t.median("bare forward")
            for case in t.samples:
                print(f"  {case:<42} {fmt_ms(t.median(case)):>9} ms  {t.median(case) / bare:7.3f}x bare", flush=True)
            sections += model_table(key, note, t, info)
    finally:
        if app is not None:
            app.close()
    rss = None if args.skip_rss else measure_rss(threads)
    if rss:
        print(f"== peak RSS {rss['peak_rss_mb']:.0f} MB", flush=True)
    batches = []
    for pictures in ([] if args.skip_batch else [False, True]):
        batch = batch_throughput(pil, args.images, args.batch_size, args.workers, threads, args.rounds,
                                 pictures=pictures)
        batches.append(batch)
        print(f"== batch CLI ({_batch_kind(batch)}) {batch['cli_ips']:.2f} images/s vs bare batched forward "
              f"{batch['bare_ips']:.2f} images/s: {batch['ratio']:.3f}x; CPU time per image "
              f"{batch['cli_cpu_per_image']:.3f} s vs {batch['bare_cpu_per_image']:.3f} s: {batch['cpu_ratio']:.3f}x",
              flush=True)
    targets = target_rows(results["resnet50"], rss, batches)
    print("== targets")
    for a, b, c, ok in targets:
        print(f"  {'ok ' if ok else 'MISS'} {a}: {c} ({b})")
    mach = machine()
    write_results(args.out, mach, sections, targets, rss, batches, time.perf_counter() - started, notes)
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
