"""The two charts of the class evidence (matplotlib Figures without pyplot, like ``viz.figures``)."""
from __future__ import annotations

import textwrap

import numpy as np

from ..viz.figures import new_figure
from .evidence import Evidence
from .faithfulness import Faithfulness
from .sanity import Sanity


def ablation_sentence(evidence: Evidence, layer: str) -> str:
    """"without SGE's spatial pattern at this layer the probability goes from a to b" for ``layer``."""
    after = evidence.ablation.get(layer)
    if after is None:
        return f"{layer}: no ablation was computed."
    return (f"Without SGE's spatial pattern at {layer} the probability of '{evidence.target.label}' goes from "
            f"{evidence.target.probability:.3f} to {after:.3f}.")


def ablation_figure(evidence: Evidence, focus: str | None = None):
    """Per SGE layer, the target's probability with that layer's gate flattened (bars), against the
    probability with every gate as it is (line); the ``focus`` layer's bar is outlined."""
    layers = evidence.layers
    values = [evidence.ablation.get(name, np.nan) for name in layers]
    x = np.arange(len(layers))
    fig = new_figure(7.0, 3.7)
    ax = fig.add_subplot()
    colours = ["#d62728" if v < evidence.target.probability else "#2ca02c" for v in values]
    bars = ax.bar(x, values, color=colours, alpha=0.8, bottom=0)
    if focus in layers:
        bars[layers.index(focus)].set_edgecolor("black")
        bars[layers.index(focus)].set_linewidth(2)
    ax.axhline(evidence.target.probability, color="black", linestyle="--", linewidth=1,
               label=f"with SGE's spatial pattern everywhere: {evidence.target.probability:.3f}")
    ax.set_xticks(x, [n.removesuffix(".sge") for n in layers], rotation=60, ha="right", fontsize=8)
    for i, v in enumerate(values):
        if np.isfinite(v):
            ax.annotate(f"{v:.3f}", (i, v), ha="center", va="bottom", fontsize=7)
    # Zoomed on the values (probabilities near 1 differ in the third decimal); never beyond 0..1.
    finite = [v for v in values if np.isfinite(v)] + [evidence.target.probability]
    lo, hi = min(finite), max(finite)
    pad = max(0.02, 0.15 * (hi - lo))
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi + pad < 1.0 else 1.0 + pad / 4)
    ax.set_ylabel(f"p('{evidence.target.label}')  (probability, 0..1)")
    ax.set_xlabel("SGE layer whose gate is replaced by its spatial mean per group")
    # Outside the axes (below them): inside, it covered the first bars.
    fig.legend(fontsize=8, loc="outside lower center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Without SGE's spatial pattern at this layer the probability goes from a (line) to b (bar)\n"
                 "(red: lower without it, green: higher; the y axis is zoomed)", fontsize=9)
    return fig


def contribution_figure(evidence: Evidence, layer: str, focus: int | None = None):
    """The layer's groups ranked by contribution (logit units), coloured by sign, with each group's gate
    vs CAM correlation on a second axis."""
    order = evidence.ranked(layer)
    values = evidence.contributions[layer][order]
    correlation = evidence.cam_correlation(layer)[order]
    x = np.arange(len(order))
    fig = new_figure(7.0, 3.4)
    ax = fig.add_subplot()
    bars = ax.bar(x, values, color=["#d62728" if v > 0 else "#1f77b4" for v in values], alpha=0.85)
    if focus is not None and focus in order:
        bars[order.index(focus)].set_edgecolor("black")
        bars[order.index(focus)].set_linewidth(2)
    ax.axhline(0, color="black", linewidth=0.8)
    labels = [f"g{g}" for g in order]
    step = max(1, len(order) // 32)
    ax.set_xticks(x[::step], labels[::step], rotation=90, fontsize=7)
    ax.set_ylabel("contribution (logit units)")
    ax.set_xlabel("group, ranked by contribution (red: for the class, blue: against)")
    twin = ax.twinx()
    twin.plot(x, correlation, "k.", markersize=5, label="gate vs CAM correlation (r)")
    twin.set_ylim(-1, 1)
    twin.set_ylabel("Pearson r of gate map with CAM (-1..1)")
    twin.legend(fontsize=8, loc="lower left")
    ax.set_title(f"{layer}: sum over channels and positions of dlogit/dy * y, per group", fontsize=9)
    return fig


def faithfulness_words(result: Faithfulness) -> str:
    """The verdicts in words (Markdown): the focused group's first, then every map's gap; the settings."""
    lines = []
    for name, c in result.curves.items():
        verdict = result.verdicts.get(name)
        said = f"**{verdict}**" if verdict else "no verdict (no random band: the model has no example images)"
        road = result.road.get(name)
        extra = (f"; ROAD most relevant first {road['most_relevant_first']:+.3f}, least relevant first "
                 f"{road['least_relevant_first']:+.3f}, combined {road['combined']:+.3f}" if road else "")
        lines.append(f"- `{name}`: gap {c.gap:+.3f} (deletion AUC {c.deletion_auc:.3f}, insertion AUC "
                     f"{c.insertion_auc:.3f}{extra}): {said}")
    band = result.band
    ref = (f"Random pixel orders: gap {band.mean:+.3f}, band {band.low:+.3f} .. {band.high:+.3f} ({band.images} "
           f"images x {band.seeds} orders)." if band is not None else "")
    definition = result.removal.describe()
    return "\n".join(lines) + f"\n\n{definition[0].upper()}{definition[1:]}. {ref}"


def faithfulness_figure(result: Faithfulness, label: str = ""):
    """Deletion (left) and insertion (right) curves of every judged map: the class probability (0..1) against
    the share of pixels removed or put back, each map's AUC and verdict in the legend, the random band's
    mean gap in the title."""
    colours = {"Grad-CAM": "#d62728", "mask": "#2ca02c"}
    fig = new_figure(8.0, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    fractions = result.removal.fractions * 100
    for i, (name, curves) in enumerate(result.curves.items()):
        colour = colours.get(name, ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b")[i % 4])
        verdict = result.verdicts.get(name)
        legend = f"{name}: gap {curves.gap:+.2f}" + (f", {verdict}" if verdict else "")
        axes[0].plot(fractions, curves.deletion, color=colour, label=f"{name}: AUC {curves.deletion_auc:.3f}")
        axes[1].plot(fractions, curves.insertion, color=colour, label=legend)
    axes[0].set_title("deletion: most important pixels removed first\n(lower AUC = better)", fontsize=9)
    axes[1].set_title("insertion: most important pixels put back first\n(higher AUC = better)", fontsize=9)
    axes[0].set_ylabel(f"p({label or 'class ' + str(result.target)})  (0..1)")
    for ax, what in zip(axes, ("removed", "put back")):
        ax.set_xlabel(f"pixels {what} (%)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    band = result.band
    note = (f"random orders: gap {band.mean:+.2f}, band {band.low:+.2f}..{band.high:+.2f}" if band is not None
            else "no random band (no verdicts)")
    text = textwrap.fill(f"{result.removal.describe()}; gap = insertion AUC - deletion AUC; {note}", 120)
    fig.suptitle(text, fontsize=8)
    return fig


def sanity_figure(report: Sanity):
    """The cascade (x: parts re-initialised, head first) against each SGE layer's mean Spearman with the trained
    mean gate (y, -1..1), SGE's parameters kept (solid) and redrawn (dashed)."""
    fig = new_figure(8.0, 3.8)
    ax = fig.add_subplot()
    x = np.arange(len(report.steps) + 1)
    for i, layer in enumerate(report.layers):
        colour = f"C{i % 10}"
        for variant, style in (("kept", "-"), ("redrawn", "--")):
            values = [1.0] + [float(np.nanmean(s.spearman[variant][layer])) for s in report.steps]
            ax.plot(x, values, style, color=colour, marker="o", markersize=3,
                    label=layer.removesuffix(".sge") if variant == "kept" else None)
    ax.set_xticks(x, ["trained"] + [f"+ {s.parts[-1]}" for s in report.steps], rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman with the trained mean gate")
    ax.set_xlabel("parts re-initialised, head to stem (cumulative)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left", title="solid: SGE kept, dashed: redrawn", title_fontsize=7)
    ax.set_title(f"Cascading randomisation: does the gate depend on the trained weights? ({report.images} images)",
                 fontsize=9)
    return fig
