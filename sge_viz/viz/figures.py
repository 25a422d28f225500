"""The few statistics plots drawn with matplotlib (a Figure without pyplot: no global state, thread-safe)."""
from __future__ import annotations

import numpy as np

from ..metrics.gates import depth_profile, histogram
from ..metrics.localisation import gate_mask_auc


def new_figure(width: float, height: float):
    """A matplotlib Figure of ``width`` x ``height`` inches at 100 dpi, constrained layout."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_pixels(fig) -> np.ndarray:
    """A matplotlib Figure drawn to (H, W, 3) uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def depth_figure(analysis):
    """Mean gate, spatial spread and share enhanced per layer (plus mean mask AUC when a mask is known)."""
    rows = depth_profile(analysis)
    x = np.arange(len(rows))
    fig = new_figure(7.5, 3.9)
    ax = fig.add_subplot()
    ax.plot(x, [r["mean"] for r in rows], "o-", label="mean gate")
    ax.plot(x, [r["spread"] for r in rows], "s-", label="spatial spread (mean std)")
    ax.plot(x, [r["enhanced_share"] for r in rows], "^-", label="share enhanced")
    if analysis.mask is not None:
        aucs = [float(np.nanmean(gate_mask_auc(lg.gate, analysis.mask))) for lg in analysis.layers]
        ax.plot(x, aucs, "D--", color="green", label="mean mask AUC (gate vs item)")
        ax.axhline(0.5, color="green", linewidth=0.6, linestyle=":")
    ax.set_xticks(x, [r["name"].removesuffix(".sge") for r in rows], rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("SGE layer (input side → output side)")
    ax.grid(alpha=0.3)
    # Below the axes, never over the points.
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=4, frameon=False)
    ax.set_title("Gate statistics across depth", fontsize=10)
    return fig


def histogram_figure(analysis, layer: str):
    """Histogram of every gate value of one layer (all groups and positions) on [0, 1], with its mean."""
    lg = analysis.layer(layer)
    counts, edges = histogram(lg.gate, bins=50)
    fig = new_figure(5.0, 3.0)
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    mean = float(lg.gate.mean())
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean gate {mean:.3f}")
    ax.set_xlabel("gate value")
    ax.set_ylabel("positions (all groups)")
    ax.set_title(f"{layer}: {lg.groups} groups x {lg.gate.shape[1]}x{lg.gate.shape[2]} positions", fontsize=10)
    ax.legend(fontsize=8)
    return fig
