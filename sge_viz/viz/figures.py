"""The few statistics plots drawn with matplotlib (a Figure without pyplot: no global state, thread-safe)."""
from __future__ import annotations

import numpy as np

from ..errors import SGEVizError
from ..metrics.gates import depth_profile, histogram
from ..metrics.localisation import gate_mask_auc


def new_figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure of ``width`` x ``height`` inches at 100 dpi, constrained layout unless ``layout`` is
    None (the caller then sets its margins)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


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
    names = [r["name"].removesuffix(".sge") for r in rows]
    # Fixed margins sized from the layer names (drawn for every new image, where the layout engine would be
    # half of its cost): an 8-pt label rotated by 60 degrees is about 5.8 px high per character, and the
    # first one reaches 3.3 px per character left of its tick.
    longest = max((len(n) for n in names), default=1)
    top, plot, bottom = 0.35, 2.6, (5.8 * longest + 10) / 100 + 0.7  # inches; + the axis label and the legend
    left = max(0.55, (3.3 * len(names[0]) + 12) / 100) if names else 0.55
    height = top + plot + bottom
    fig = new_figure(7.5, height, layout=None)
    fig.subplots_adjust(left=left / 7.5, right=1 - 0.2 / 7.5, bottom=bottom / height, top=1 - top / height)
    ax = fig.add_subplot()
    ax.plot(x, [r["mean"] for r in rows], "o-", label="mean gate")
    ax.plot(x, [r["spread"] for r in rows], "s-", label="spatial spread (mean std)")
    ax.plot(x, [r["enhanced_share"] for r in rows], "^-", label="share enhanced")
    if analysis.mask is not None:
        aucs = [float(np.nanmean(gate_mask_auc(lg.gate, analysis.mask))) for lg in analysis.layers]
        ax.plot(x, aucs, "D--", color="green", label="mean mask AUC (gate vs item)")
        ax.axhline(0.5, color="green", linewidth=0.6, linestyle=":")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("SGE layer (input side → output side)")
    ax.grid(alpha=0.3)
    # Below the axes, never over the points.
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="lower center", ncols=4, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    ax.set_title("Gate statistics across depth", fontsize=10)
    return fig


def histogram_figure(analysis, layer: str):
    """Histogram of every gate value of one layer (all groups and positions) on [0, 1], with its mean."""
    lg = analysis.layer(layer)
    counts, edges = histogram(lg.gate, bins=50)
    # Fixed margins: redrawn on every layer change, and the layout engine would be half of its cost.
    fig = new_figure(5.0, 3.0, layout=None)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.16, top=0.9)
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    mean = float(lg.gate.mean())
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean gate {mean:.3f}")
    ax.set_xlabel("gate value")
    ax.set_ylabel("positions (all groups)")
    ax.set_title(f"{layer}: {lg.groups} groups x {lg.gate.shape[1]}x{lg.gate.shape[2]} positions", fontsize=10)
    ax.legend(fontsize=8)
    return fig


MAX_SLICES = 8  # a 3-D gate's picture shows at most this many depth slices, evenly spaced


def other_gate_figure(name: str, gate: np.ndarray, cmap: str = "inferno", depth: int | None = None):
    """The picture of a gate over a 1-D or 3-D input, on the gate's full 0..1 scale with a colour bar.

    ``gate`` (G, L): one strip per group along the sequence (rows = groups). ``gate`` (G, D, H, W): a grid of
    depth slices, one row per group and one column per slice (at most ``MAX_SLICES``, evenly spaced, named);
    with ``depth`` (0..D-1), every group's gate on that one slice instead (the page's slice control)."""
    gate = np.asarray(gate, dtype=np.float32)
    if gate.ndim == 4 and depth is not None:
        return _slice_figure(name, gate, int(depth), cmap)
    if gate.ndim == 2:
        groups, length = gate.shape
        fig = new_figure(7.5, max(1.8, 0.9 + 0.22 * groups))
        ax = fig.add_subplot()
        shown = ax.imshow(gate, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xlabel(f"position along the sequence (0..{length - 1})")
        ax.set_ylabel("group")
        ax.set_yticks(range(groups))
        ax.set_title(f"{name}: gate per group along its 1-D input (one strip per group)", fontsize=9)
        fig.colorbar(shown, ax=ax, label="gate (0..1)")
        return fig
    groups, depth = gate.shape[:2]
    slices = np.unique(np.linspace(0, depth - 1, min(depth, MAX_SLICES)).round().astype(int))
    fig = new_figure(1.2 * len(slices) + 1.6, 1.1 * groups + 0.9)
    axes = fig.subplots(groups, len(slices), squeeze=False)
    shown = None
    for g in range(groups):
        for j, d in enumerate(slices):
            ax = axes[g][j]
            shown = ax.imshow(gate[g, d], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if g == 0:
                ax.set_title(f"slice {d}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"group {g}", fontsize=8)
    fig.colorbar(shown, ax=axes, label="gate (0..1)", shrink=0.8)
    note = "" if len(slices) == depth else f" ({len(slices)} of {depth} slices, evenly spaced)"
    fig.suptitle(f"{name}: gate per group over its 3-D input, by depth slice{note}", fontsize=9)
    return fig


def _slice_figure(name: str, gate: np.ndarray, depth: int, cmap: str):
    """Every group's gate (G, D, H, W) on depth slice ``depth``: one tile per group, 8 to a row."""
    groups, slices = gate.shape[:2]
    if not 0 <= depth < slices:
        raise SGEVizError(f"Slice {depth} is outside {name}'s depth 0..{slices - 1}.")
    cols = min(groups, 8)
    rows = -(-groups // cols)
    fig = new_figure(1.1 * cols + 1.4, 1.1 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = None
    for g, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if g >= groups:
            ax.set_axis_off()
            continue
        shown = ax.imshow(gate[g, depth], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"group {g}", fontsize=7)
    fig.colorbar(shown, ax=axes, label="gate (0..1)", shrink=0.8)
    fig.suptitle(f"{name}: every group's gate on depth slice {depth} of {slices} "
                 f"({gate.shape[2]}x{gate.shape[3]} positions)", fontsize=9)
    return fig
