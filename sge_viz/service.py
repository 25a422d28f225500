"""What the app does, apart from the page: which models it offers, one analysis, and every picture.

The UI calls ``ModelService.run_analysis`` once per (image, model); everything a
user changes afterwards (layer, group, colour map, opacity, colour scale, ordering) goes
through the ``render_*``/``*_figure``/``group_table`` functions below, which
read the ``Analysis`` alone and never touch the model.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import assets, export, metrics, render, stats
from .analysis import Analysis, LayerGates, analyze
from .checkpoints import (CHECKPOINT_DIR, DEMO_CHECKPOINT, LoadedModel, create_model, find_checkpoints,
                          load_checkpoint)
from .errors import SGEVizError
from .images import center_crop_view, open_image
from .models import DEMO_ARCH, available_models

DEMO_LABEL = f"{DEMO_ARCH} (demo)"
FALLBACK_ARCH = "sge_resnet18"  # offered, untrained, while the demo checkpoint is missing
ORDERS = ("model order", "most selective first")
# Heatmap colour scale: this layer's own min..max (the default: trained gates often sit in a narrow
# band, e.g. 0.6-0.85, where a 0..1 scale shows almost nothing), or the gate's full range 0..1
# (colours mean the same in every layer). The legend under the overlay gives the numbers.
SCALES = ("this layer's range", "gate range 0 to 1")
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo", "gray")
TILE = 96  # largest mosaic tile side in pixels
MOSAIC_WIDTH = 576  # about the width the page gives the mosaic: more pixels would only be scaled down


def mosaic_tile(groups: int) -> int:
    """Tile side for a layer's mosaic: up to TILE px, smaller when many groups share the width.

    render.group_at must be given the same value. 8 groups -> 96 px, 64 groups -> 70 px.
    """
    _, columns = render.mosaic_grid(groups)
    return max(48, min(TILE, MOSAIC_WIDTH // columns - render.GAP))
MIN_VIEW_SIDE = 320  # small inputs (the demo's 64x64 canvases) are enlarged before drawing over them
DOWNLOAD_ROOT = Path(tempfile.gettempdir()) / "sge_viz_downloads"
DOWNLOAD_TTL_S = 3600


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model dropdown and how to load it."""

    label: str
    name: str | None = None
    checkpoint: Path | None = None
    random_weights: bool = False


class ModelService:
    """The models the app offers, loaded on first use and cached; safe to call from many threads."""

    def __init__(self, device: str | None = None, checkpoint: str | Path | None = None,
                 random_weights: list[str] | tuple[str, ...] = (), checkpoint_dir: str | Path = CHECKPOINT_DIR,
                 default: str | None = None):
        self.device = device
        self.notice = ""
        self._cache: dict[str, LoadedModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cli_label: str | None = None
        self._choices = self._discover(Path(checkpoint_dir), checkpoint, random_weights)
        # Start on what was asked for: --model, else the --checkpoint file, else the demo (listed first).
        self.default = self.resolve(default) if default else (self._cli_label or self._choices[0].label)
        if not DEMO_CHECKPOINT.is_file():
            self.notice = (f"The shipped demo model ({DEMO_CHECKPOINT.name}) is missing from checkpoints/, so the "
                           f"app starts on {self.default} instead"
                           + (" (untrained: its gates are not meaningful)" if "random weights" in self.default
                              else "")
                           + ". Restore it with `git checkout checkpoints/` or train it with "
                           "`python -m sge_viz.train`.")
        self._examples: dict[str, Path] | None = None

    # --- which models -----------------------------------------------------

    def _discover(self, checkpoint_dir: Path, checkpoint: str | Path | None,
                  random_weights: list[str] | tuple[str, ...]) -> list[ModelChoice]:
        choices: list[ModelChoice] = []
        seen: set[Path] = set()
        if checkpoint is not None:
            # Named on the command line: load now, so a bad file fails at start-up with its reason.
            path = Path(checkpoint)
            loaded = load_checkpoint(path, self.device)
            self._cache[loaded.name] = loaded
            choices.append(ModelChoice(loaded.name, checkpoint=path))
            self._cli_label = loaded.name
            seen.add(path.resolve())
        if DEMO_CHECKPOINT.is_file() and DEMO_CHECKPOINT.resolve() not in seen:
            choices.insert(0, ModelChoice(DEMO_LABEL, checkpoint=DEMO_CHECKPOINT))
            seen.add(DEMO_CHECKPOINT.resolve())
        for found in find_checkpoints(checkpoint_dir):
            if found.path.resolve() not in seen:
                choices.append(ModelChoice(found.label, checkpoint=found.path))
                seen.add(found.path.resolve())
        names = list(random_weights)
        if not choices and FALLBACK_ARCH not in names:
            names.append(FALLBACK_ARCH)
        for name in names:
            if name not in available_models() or name == DEMO_ARCH:
                raise SGEVizError(f"--random-weights {name!r} is not a known architecture; known: "
                                  f"{', '.join(m for m in available_models() if m != DEMO_ARCH)}.")
            choices.append(ModelChoice(f"{name} (random weights)", name=name, random_weights=True))
        return choices

    @property
    def choices(self) -> list[str]:
        return [c.label for c in self._choices]

    def resolve(self, wanted: str) -> str:
        """A dropdown label from a label, an architecture name or "demo"; else a clear error."""
        for choice in self._choices:
            if wanted == choice.label:
                return choice.label
        if wanted in ("demo", DEMO_ARCH) and DEMO_LABEL in self.choices:
            return DEMO_LABEL
        for choice in self._choices:
            if choice.label.split(" ")[0] == wanted:
                return choice.label
        raise SGEVizError(f"Model {wanted!r} is not on offer; choose one of: {', '.join(self.choices)}. "
                          "Put official checkpoints in checkpoints/, pass --checkpoint PATH, or use "
                          "--random-weights NAME for an untrained network.")

    def _choice(self, label: str) -> ModelChoice:
        for choice in self._choices:
            if choice.label == label:
                return choice
        raise SGEVizError(f"Model {label!r} is not on offer; choose one of: {', '.join(self.choices)}.")

    def get(self, label: str) -> LoadedModel:
        """The loaded model for a dropdown label; loads it once, even when asked from several threads."""
        choice = self._choice(label)
        with self._guard:
            if label in self._cache:
                return self._cache[label]
            lock = self._locks.setdefault(label, threading.Lock())
        with lock:
            if label not in self._cache:
                if choice.checkpoint is not None:
                    loaded = load_checkpoint(choice.checkpoint, self.device)
                else:
                    loaded = create_model(choice.name, device=self.device, random_weights=choice.random_weights)
                with self._guard:
                    self._cache[label] = loaded
        return self._cache[label]

    def is_loaded(self, label: str) -> bool:
        with self._guard:
            return label in self._cache

    # --- one analysis ---------------------------------------------------------

    def run_analysis(self, choice: str, image: str | Path | bytes | Image.Image, name: str = "image") -> Analysis:
        """Open the image, run the chosen model once with gate capture; the example's mask rides along.

        ``analysis.extras`` gets: "name" (for captions), "device" (where it ran),
        "mask" (the item mask cropped like the image, for example scenes only) and
        "seconds" (how long the forward took).
        """
        pil = open_image(image)
        loaded = self.get(choice)
        start = time.perf_counter()
        analysis = analyze(loaded, pil)
        analysis.extras["seconds"] = time.perf_counter() - start
        analysis.extras["name"] = name
        analysis.extras["device"] = loaded.device_label
        analysis.extras["model_label"] = choice
        mask = self._example_mask(pil, loaded)
        if mask is not None:
            analysis.extras["mask"] = mask
        return analysis

    def _example_mask(self, pil: Image.Image, loaded: LoadedModel) -> np.ndarray | None:
        """The item mask when the image is one of the shipped example scenes (recognised by its pixels)."""
        path = self.example_index().get(_pixel_key(pil))
        if path is None:
            return None
        try:
            mask = assets.mask_for(path)
        except (SGEVizError, OSError):  # a broken mask file costs the outline, not the analysis
            return None
        if mask is None:
            return None
        mask_img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "L")
        if mask_img.size != pil.size:
            return None
        # The same resize and centre crop the image went through, so mask and gates line up.
        view = center_crop_view(mask_img, loaded.config.resize_size, loaded.config.input_size)
        return view >= 128

    def example_index(self) -> dict[str, Path]:
        if self._examples is None:
            index: dict[str, Path] = {}
            for path in example_paths():
                try:
                    index[_pixel_key(open_image(path))] = Path(path)
                except SGEVizError:
                    continue
            self._examples = index
        return self._examples


def example_paths() -> list[Path]:
    """The example images in assets/ (none when the folder is missing or unreadable)."""
    try:
        return assets.example_images()
    except OSError:
        return []


def _pixel_key(pil: Image.Image) -> str:
    return hashlib.sha256(f"{pil.size}".encode() + pil.tobytes()).hexdigest()


# --- pictures: pure functions of an Analysis ---------------------------------------

def group_order(layer: LayerGates, order: str) -> list[int]:
    if order == ORDERS[1]:
        return list(stats.selectivity_order(layer.gate))
    return list(range(layer.groups))


def most_selective(layer: LayerGates) -> int:
    return int(stats.selectivity_order(layer.gate)[0])


def default_layer(analysis: Analysis, min_side: int = 14) -> str:
    """The deepest layer whose gate maps are still at least ``min_side`` wide (e.g. layer3.5.sge in
    SGE-ResNet50, layer2.1.sge in the demo model): semantic, yet detailed enough to read."""
    wide = [lg.name for lg in analysis.layers if lg.gate.shape[2] >= min_side]
    return wide[-1] if wide else analysis.layer_names[-1]


def view_image(analysis: Analysis) -> np.ndarray:
    """The network's crop, enlarged when small so heatmaps over it are readable; cached on the analysis."""
    cached = analysis.extras.get("_view")
    if cached is None:
        image = analysis.image
        side = image.shape[0]
        cached = image
        if side < MIN_VIEW_SIDE:
            scale = -(-MIN_VIEW_SIDE // side)
            cached = np.asarray(Image.fromarray(image).resize((side * scale, side * scale), Image.LANCZOS))
        analysis.extras["_view"] = cached
    return cached


def view_mask(analysis: Analysis) -> np.ndarray | None:
    mask = analysis.extras.get("mask")
    if mask is None:
        return None
    side = view_image(analysis).shape[0]
    if mask.shape[0] == side:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((side, side), Image.NEAREST)) >= 128


def _outlined(analysis: Analysis, picture: np.ndarray) -> np.ndarray:
    mask = view_mask(analysis)
    return picture if mask is None else render.draw_outline(picture, mask)


def colour_range(lg: LayerGates, scale: str = SCALES[0]) -> tuple[float, float]:
    """(vmin, vmax) of the gate heatmaps for a scale choice."""
    if scale == SCALES[0]:
        lo, hi = float(lg.gate.min()), float(lg.gate.max())
        if hi > lo:
            return lo, hi
    return 0.0, 1.0


def render_mosaic(analysis: Analysis, layer: str, order: str, cmap: str, alpha: float,
                  focus: int | None = None, scale: str = SCALES[0]) -> np.ndarray:
    """Every group's gate of one layer over the image, in the chosen order, the focused group framed."""
    lg = analysis.layer(layer)
    vmin, vmax = colour_range(lg, scale)
    return render.mosaic(view_image(analysis), lg.gate, order=group_order(lg, order), cmap=cmap, alpha=alpha,
                         tile=mosaic_tile(lg.groups), highlight=focus, vmin=vmin, vmax=vmax)


def clicked_group(analysis: Analysis, layer: str, order: str, x: int, y: int) -> int | None:
    lg = analysis.layer(layer)
    return render.group_at(x, y, lg.groups, tile=mosaic_tile(lg.groups), order=group_order(lg, order))


@dataclass
class FocusViews:
    """The pictures of one focused group."""

    overlay: np.ndarray  # gate over the image
    diverging: np.ndarray  # enhanced (red) vs suppressed (blue) relative to the group's mean gate
    activations: np.ndarray  # group activation before | after SGE
    gate_legend: np.ndarray
    diverging_legend: np.ndarray
    caption: str


def render_focus(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                 scale: str = SCALES[0]) -> FocusViews:
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    image = view_image(analysis)
    gate = lg.gate[group]
    g = stats.group_stats(lg.gate[group:group + 1])
    caption = (f"**{analysis.extras.get('name', 'image')}** · `{layer}` · group **{group}** of {lg.groups} · "
               f"gate map {gate.shape[0]}x{gate.shape[1]} · mean gate {float(g.mean[0]):.3f} · "
               f"spread {float(g.std[0]):.3f} · enhanced share {float(g.enhanced_share[0]):.0%} · "
               f"selectivity {float(g.selectivity[0]):.3f}")
    return FocusViews(
        overlay=_outlined(analysis, render.overlay(image, gate, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)),
        diverging=_outlined(analysis, render.diverging(image, gate)),
        activations=render.activation_pair(image, lg.before[group], lg.after[group]),
        gate_legend=legend(cmap, "gate: suppressed", "passed", vmin=vmin, vmax=vmax),
        diverging_legend=legend("bwr", "below the group's mean gate", "above it (enhanced)", ticks=False),
        caption=caption,
    )


def check_group(lg: LayerGates, group: int) -> int:
    group = int(group)
    if not 0 <= group < lg.groups:
        raise SGEVizError(f"Group {group} does not exist in {lg.name}: it has groups 0 to {lg.groups - 1}.")
    return group


@lru_cache(maxsize=64)
def legend(cmap: str, left: str, right: str, width: int = 320, ticks: bool = True, vmin: float = 0.0,
           vmax: float = 1.0) -> np.ndarray:
    """A colour bar (with vmin / middle / vmax ticks when ``ticks``) and its meaning under both ends.

    Cached (read-only result): the same legend is asked for on every redraw of a layer.
    """
    bar = render.colorbar(cmap, width=width, height=14, vmin=vmin, vmax=vmax, labels=ticks)
    canvas = Image.new("RGB", (width, bar.shape[0] + 16), (255, 255, 255))
    canvas.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, bar.shape[0] + 2), left, fill=(40, 40, 40))
    draw.text((width - draw.textlength(right) - 2, bar.shape[0] + 2), right, fill=(40, 40, 40))
    picture = np.array(canvas)
    picture.setflags(write=False)
    return picture


def compare_panel(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                  scale: str = SCALES[0]) -> tuple[np.ndarray, str]:
    """One pinned (image, layer, group) view for the compare row, with its caption."""
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    picture = _outlined(analysis, render.overlay(view_image(analysis), lg.gate[group], cmap=cmap, alpha=alpha,
                                                 vmin=vmin, vmax=vmax))
    caption = f"{analysis.extras.get('name', 'image')} · {layer} · group {group}"
    if (vmin, vmax) != (0.0, 1.0):
        caption += f" · scale {vmin:.2f}-{vmax:.2f}"
    return picture, caption


# --- statistics ---------------------------------------------------------------------

def _figure(width: float, height: float):
    # A Figure without pyplot: no global state, safe in worker threads.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def depth_figure(analysis: Analysis):
    """Mean gate, spatial spread and share enhanced per layer (plus mean mask AUC for example scenes)."""
    rows = stats.depth_profile(analysis)
    x = np.arange(len(rows))
    fig = _figure(7.5, 3.4)
    ax = fig.add_subplot()
    ax.plot(x, [r["mean"] for r in rows], "o-", label="mean gate")
    ax.plot(x, [r["spread"] for r in rows], "s-", label="spatial spread (mean std)")
    ax.plot(x, [r["enhanced_share"] for r in rows], "^-", label="share enhanced")
    mask = analysis.extras.get("mask")
    if mask is not None:
        aucs = [float(np.nanmean(metrics.gate_mask_auc(lg.gate, mask))) for lg in analysis.layers]
        ax.plot(x, aucs, "D--", color="green", label="mean gate-vs-item AUC")
    ax.set_xticks(x, [r["name"].removesuffix(".sge") for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("SGE layer (input side → output side)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Gate statistics across depth", fontsize=10)
    return fig


def histogram_figure(analysis: Analysis, layer: str):
    lg = analysis.layer(layer)
    counts, edges = stats.histogram(lg.gate, bins=50)
    fig = _figure(5.0, 3.0)
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    mean = float(lg.gate.mean())
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
    ax.set_xlabel("gate value")
    ax.set_ylabel("positions (all groups)")
    ax.set_title(f"{layer}: {lg.groups} groups x {lg.gate.shape[1]}x{lg.gate.shape[2]} positions", fontsize=10)
    ax.legend(fontsize=8)
    return fig


TABLE_HEADERS = ["rank", "group", "selectivity", "mean", "std", "min", "max", "enhanced"]


def group_table(analysis: Analysis, layer: str) -> tuple[list[str], list[list]]:
    """Groups ranked by selectivity, most selective first; with a mask-AUC column for example scenes."""
    lg = analysis.layer(layer)
    gs = stats.group_stats(lg.gate)
    mask = analysis.extras.get("mask")
    auc = metrics.gate_mask_auc(lg.gate, mask) if mask is not None else None
    headers = TABLE_HEADERS + (["item AUC"] if auc is not None else [])
    rows = []
    for rank, g in enumerate(stats.selectivity_order(lg.gate), start=1):
        row = [rank, int(g)] + [round(float(v[g]), 3) for v in
                                (gs.selectivity, gs.mean, gs.std, gs.min, gs.max, gs.enhanced_share)]
        if auc is not None:
            row.append(round(float(auc[g]), 3))
        rows.append(row)
    return headers, rows


def analysis_stats(analysis: Analysis) -> dict:
    """stats.json for this analysis, with the mask-AUC column for example scenes."""
    return stats.analysis_stats(analysis, analysis.extras.get("mask"))


# --- downloads ----------------------------------------------------------------------

def write_downloads(analysis: Analysis, pictures: dict[str, np.ndarray]) -> list[str]:
    """The on-screen pictures as PNGs plus gates.npz and stats.json (the CLI's formats), in a fresh folder."""
    _prune_downloads()
    folder = Path(tempfile.mkdtemp(prefix="sge_viz_", dir=_download_root()))
    paths = []
    for name, picture in pictures.items():
        path = folder / f"{_safe(name)}.png"
        path.write_bytes(render.to_png_bytes(picture))
        paths.append(path)
    (folder / "gates.npz").write_bytes(export.npz_bytes(analysis))
    (folder / "stats.json").write_text(export.stats_json(analysis, analysis.extras.get("mask")), encoding="utf-8")
    paths += [folder / "gates.npz", folder / "stats.json"]
    return [str(p) for p in paths]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _download_root() -> Path:
    DOWNLOAD_ROOT.mkdir(parents=True, exist_ok=True)
    return DOWNLOAD_ROOT


def _prune_downloads() -> None:
    """Old download folders go; the served copies live in Gradio's own cache."""
    if not DOWNLOAD_ROOT.is_dir():
        return
    cutoff = time.time() - DOWNLOAD_TTL_S
    for folder in DOWNLOAD_ROOT.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
