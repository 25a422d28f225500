"""The outputs of a dissection, written atomically into the output folder:

    summary.json              the numbers (``summary.summary_dict``); written last
    figures/fig2_<layer>.png  the paper's Fig. 2: chosen groups' top images, vector length before vs after SGE
    figures/fig3_<layer>.png  Fig. 3: histogram of vector lengths before and after SGE
    figures/fig4_<layer>.png  Fig. 4: each group's per-image activation variance before and after (mean +- std)
    groups/<layer>/gNN.png    a group's top-K image patches (the region around the winning cell), gate over them
    index.html                one self-contained page (relative links) browsing layers and groups

Pictures are drawn from what the pass kept for each top entry (``pictures``: a small crop and the
group's maps), with no forward. Entries without them (a run made with ``pictures=False``, or a state
saved by one) are re-read and run through the model once, those images only.
"""
from __future__ import annotations

import html
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import viz
from ..capture.analysis import analyze_views
from ..domain.detector import describe
from ..explain.faithfulness import VERDICTS, Band, Removal, set_block
from ..io.export import _replace_dir
from ..io.feed import load_item
from ..io.inputs import Item
from ..models.factory import LoadedModel
from ..viz.figures import figure_pixels
from .pictures import FIG2_PANEL, FIG_FIELDS, TILE, draw_patch, entry_pictures
from .summary import LENGTH_EDGES, Partial, summary_dict

FIG2_GROUPS = 3  # groups shown in Fig. 2 (the paper shows three)
MARK = (220, 20, 20)  # frame of an out-of-domain image's tiles


def model_info(loaded: LoadedModel) -> dict:
    """The model block of summary.json."""
    return {"name": loaded.name, "arch": loaded.config.arch, "source": loaded.source, "device": loaded.device_label,
            "input_size": loaded.config.input_size, "resize_size": loaded.config.resize_size,
            "notes": list(loaded.notes_with_layout)}  # how the network was built: read with every number


def figure_groups(summary: dict, layer: str, count: int = FIG2_GROUPS) -> list[int]:
    """Fig. 2's groups of ``layer``: the highest mask AUC when masks exist, else the most selective gate
    (gate_std / gate_mean over all positions of all images)."""
    groups = summary["layers"][layer]["per_group"]
    if any(g["mask_auc"] is not None for g in groups):
        key = [-(g["mask_auc"] if g["mask_auc"] is not None else -1.0) for g in groups]
    else:
        key = [-((g["gate_std"] or 0.0) / (g["gate_mean"] or 1.0)) for g in groups]
    return [int(i) for i in np.argsort(key, kind="stable")[:count]]


def detector_info(loaded: LoadedModel) -> dict | None:
    """The model's out-of-domain detector as summary.json names it, None for a gates-only model."""
    ood = getattr(loaded, "ood", None)
    return None if ood is None else {"score": ood.name, "description": describe(ood.name),
                                     "threshold": float(ood.threshold)}


def write_report(out: Path, partial: Partial, loaded: LoadedModel, items: Sequence[Item], pictures: bool = True,
                 batch_size: int = 8, left_out: bool = False, faithfulness: Removal | None = None,
                 band: Band | None = None) -> dict:
    """Write every output of the module docstring into ``out``; returns the summary dict.

    ``left_out``: the run left out-of-domain images out (``run_local(skip_out_of_domain=True)``).
    ``faithfulness``, ``band``: the run's deletion/insertion settings and the model's random band (the
    "faithfulness" block and section)."""
    out.mkdir(parents=True, exist_ok=True)
    block = set_block(partial.faithfulness, faithfulness, band) if faithfulness is not None else None
    summary = summary_dict(partial, model_info(loaded), detector_info(loaded), left_out, block)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = out / f".report-{token}"
    tmp.mkdir()
    try:
        figures = {}
        if pictures and partial.images:
            figures = _draw(tmp, summary, partial, loaded, items, batch_size)
        (tmp / "index.html").write_text(index_html(summary, figures, pictures), encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        for name in ("figures", "groups"):
            if (tmp / name).is_dir():
                _replace_dir(tmp / name, out / name, token)
            elif (out / name).is_dir():
                shutil.rmtree(out / name)  # pictures of an earlier run would not match this summary
        os.replace(tmp / "index.html", out / "index.html")
        os.replace(tmp / "summary.json", out / "summary.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _save(path: Path, picture: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(viz.to_png_bytes(picture))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def entry_data(partial: Partial, loaded: LoadedModel, items: Sequence[Item],
               batch_size: int = 8) -> dict[tuple[str, int, int], dict[str, np.ndarray]]:
    """What the report draws, per (layer, group, rank) of the top lists: the ``pictures`` fields of the
    entry (one row each). Kept by the pass where it has them; the rest from one forward of their images
    (an image that can no longer be read leaves its entries out)."""
    out: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
    missing: dict[str, list[tuple[str, int, int, int, int]]] = {}
    layer_names = list(partial.layers)
    for name, layer in partial.layers.items():
        best, pool = layer.best, layer.pictures
        slots = best.slots()
        for g in range(layer.groups):
            for rank in range(best.score.shape[1]):
                slot = int(slots[g, rank])
                if pool is not None and slot >= 0:
                    out[(name, g, rank)] = {f: a[slot] for f, a in pool.items()}
                else:
                    missing.setdefault(str(best.image[g, rank]), []).append(
                        (name, g, rank, int(best.row[g, rank]), int(best.col[g, rank])))
    if missing:
        out.update(_second_pass(missing, loaded, items, batch_size, layer_names[-1]))
    return out


def _second_pass(missing: dict[str, list[tuple[str, int, int, int, int]]], loaded: LoadedModel,
                 items: Sequence[Item], batch_size: int, figure_layer: str) -> dict:
    out = {}
    by_name = {item.name: item for item in items if item.name in missing}
    names, config = list(by_name), loaded.config
    for start in range(0, len(names), batch_size):
        chunk, views = [], []
        for n in names[start:start + batch_size]:
            fed = load_item(by_name[n], config.resize_size, config.input_size)
            if fed.error is not None:
                continue  # changed since it was analysed: its slots stay blank
            views.append(fed.view)
            chunk.append(n)
        for n, analysis in zip(chunk, analyze_views(loaded, views) if views else []):
            for layer_name, g, rank, row, col in missing[n]:
                lg = analysis.layer(layer_name)
                lengths = ((lg.before_length[g][None], lg.after_length[g][None]) if layer_name == figure_layer
                           else None)
                pool = entry_pictures([analysis.image], np.zeros(1, np.int64), np.array([row]), np.array([col]),
                                      lg.gate[g][None], lengths)
                out[(layer_name, g, rank)] = {f: a[0] for f, a in pool.items()}
    return out


def _draw(folder: Path, summary: dict, partial: Partial, loaded: LoadedModel, items: Sequence[Item],
          batch_size: int) -> dict:
    """All pictures into ``folder``; {"fig2": {layer: rel}, "fig3": {...}, "fig4": {...}} relative paths."""
    rel: dict[str, dict[str, str]] = {"fig2": {}, "fig3": {}, "fig4": {}}
    for name, layer in summary["layers"].items():
        rel["fig3"][name] = f"figures/fig3_{_safe(name)}.png"
        _save(folder / rel["fig3"][name], figure_pixels(length_histogram_figure(name, layer)))
        rel["fig4"][name] = f"figures/fig4_{_safe(name)}.png"
        _save(folder / rel["fig4"][name], figure_pixels(variance_figure(name, layer)))
    data = entry_data(partial, loaded, items, batch_size)
    size = loaded.config.input_size
    rejected = {n for n, v in partial.verdicts.items() if v.out_of_domain}
    for name, layer in summary["layers"].items():
        for g in layer["per_group"]:
            group = g["group"]
            tiles = []
            for rank, t in enumerate(g["top"]):
                entry = data.get((name, group, rank))
                tile = None if entry is None else draw_patch(entry["crop"], entry["gate"], t["row"], t["col"], size)
                tiles.append(mark_out_of_domain(tile) if tile is not None and t["image"] in rejected else tile)
            title = f"{name} g{group}: top {len(g['top'])} images, the strongest region, bright = high gate"
            if any(t["image"] in rejected for t in g["top"]):
                title += "; red frame = out of domain"
            _save(folder / "groups" / _safe(name) / f"g{group:02d}.png", viz.caption(_tile_row(tiles), title, size=11))
    fig_layer = list(summary["layers"])[-1]
    groups = summary["layers"][fig_layer]["per_group"]
    fig2 = {}
    for g in figure_groups(summary, fig_layer):
        fig2[g] = {rank: (t["image"], *(data[(fig_layer, g, rank)][f] for f in FIG_FIELDS[2:]))
                   for rank, t in enumerate(groups[g]["top"]) if (fig_layer, g, rank) in data}
    rel["fig2"][fig_layer] = f"figures/fig2_{_safe(fig_layer)}.png"
    _save(folder / rel["fig2"][fig_layer], fig2_picture(fig_layer, fig2, partial.k, rejected))
    return rel


def mark_out_of_domain(tile: np.ndarray, width: int = 3) -> np.ndarray:
    """``tile`` (H, W, 3) uint8 inside a red frame ``width`` px wide: the image is out of domain."""
    out = tile.copy()
    for part in (out[:width], out[-width:], out[:, :width], out[:, -width:]):
        part[:] = MARK
    return out


def _tile_row(tiles: list[np.ndarray | None], size: int = TILE) -> np.ndarray:
    """Tiles ``size`` px wide side by side (white where one is None), as tall as the tallest."""
    count = max(1, len(tiles))
    height = max([t.shape[0] for t in tiles if t is not None], default=size)
    out = np.full((height, count * (size + viz.GAP) - viz.GAP, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        if tile is not None:
            out[:tile.shape[0], i * (size + viz.GAP):i * (size + viz.GAP) + size] = tile
    return out


def _label(tile: np.ndarray, text: str, prefix: str = "", size: int = 10) -> np.ndarray:
    """``tile`` with ``prefix`` + ``text`` in a strip above it, ``text`` cut (its end kept) to fit the width."""
    chars = max(4, tile.shape[1] // max(1, size * 6 // 10) - len(prefix))
    text = text if len(text) <= chars else "…" + text[-(chars - 1):]
    return viz.caption(tile, prefix + text, size=size)


def _overlay_fitted(view: np.ndarray, values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """``values`` (h, w) over the part of a Fig. 2 panel that holds the image (``pictures.fig2_view`` keeps a
    non-square crop's aspect ratio and leaves white margins)."""
    h, w = values.shape
    scale = view.shape[0] / max(h, w)
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    out = view.copy()
    out[:ch, :cw] = viz.overlay(view[:ch, :cw], values, cmap="viridis", alpha=0.6, vmin=vmin, vmax=vmax)
    return out


def fig2_picture(layer: str, groups: dict[int, dict[int, tuple]], k: int,
                 rejected: set[str] | frozenset[str] = frozenset()) -> np.ndarray:
    """Fig. 2: per group two rows (before / after SGE) of its top images' vector-length maps, one colour
    scale per group, each column named by its image; images in ``rejected`` (out of domain) framed in
    red and named "OOD: ..."; (H, W, 3) uint8.

    ``groups``: {group: {rank: (image name, view (P, P, 3) uint8, before (h, w), after (h, w))}}."""
    rows, marked = [], False
    for g, ranks in groups.items():
        panels = [ranks[r] for r in sorted(ranks)][:k]
        if not panels:
            continue
        lo = float(min(min(np.min(b), np.min(a)) for _, _, b, a in panels))
        hi = float(max(max(np.max(b), np.max(a)) for _, _, b, a in panels))
        hi = hi if hi > lo else lo + 1.0
        for label, index in (("before", 2), ("after", 3)):
            tiles = []
            for p in panels:
                view = _overlay_fitted(p[1], np.asarray(p[index], np.float32), vmin=lo, vmax=hi)
                if p[0] in rejected:
                    view, marked = mark_out_of_domain(view), True
                tiles.append(_label(view, p[0], "OOD: " if p[0] in rejected else "") if index == 2 else view)
            rows.append(viz.caption(_tile_row(tiles, FIG2_PANEL), f"group {g}, {label} SGE "
                                    f"(colour scale {lo:.3g} .. {hi:.3g})", size=11))
    if not rows:
        rows = [np.full((FIG2_PANEL, FIG2_PANEL, 3), 255, np.uint8)]
    title = f"{layer}: vector length, top images, before vs after SGE"
    return viz.caption(viz.stack(rows), title + ("; red frame = out of domain" if marked else ""), size=12)


def length_histogram_figure(name: str, layer: dict):
    """Fig. 3: share of positions per vector-length bin, before and after SGE (log x)."""
    from ..viz.figures import new_figure

    hist = layer["length_histogram"]
    edges = np.asarray(hist["edges"])
    fig = new_figure(5.5, 3.2)
    ax = fig.add_subplot()
    for key, colour in (("before", "tab:blue"), ("after", "tab:orange")):
        counts = np.asarray(hist[key], dtype=np.float64)
        share = counts / max(counts.sum(), 1)
        ax.stairs(share, np.maximum(edges, edges[1] / 10), label=f"{key} SGE", color=colour,
                  fill=key == "before", alpha=0.5 if key == "before" else 1.0)
    ax.set_xscale("log")
    # The axis spans the bins that hold data (the histogram's fixed bins reach 1e-3..1e4 so that any layer of
    # any model fits; drawn whole, the data would be a sliver in the middle).
    filled = np.flatnonzero(np.asarray(hist["before"], np.float64) + np.asarray(hist["after"], np.float64))
    if filled.size:
        lo, hi = max(edges[filled[0]], edges[1] / 10), edges[filled[-1] + 1]
        ax.set_xlim(lo / 1.25, hi * 1.25)
    _log_ticks(ax)
    ax.set_xlabel("vector length ||x_g(p)||₂ of a group at a position")
    ax.set_ylabel("share of positions")
    ax.set_title(f"{name}: activation vector lengths (all groups, positions, images)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _log_ticks(ax) -> None:
    """Labelled major ticks only on a log x axis, readable over any span: decades (thinned by matplotlib when
    there are many), or 1-2-5 steps when the axis spans less than two decades; minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_xlim()
    subs = (1.0,) if np.log10(hi / lo) >= 2 else (1.0, 2.0, 5.0)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10), numticks=12))
    ax.xaxis.set_minor_formatter(NullFormatter())


def variance_figure(name: str, layer: dict):
    """Fig. 4: per group, mean +- std over images of the activation variance before and after SGE."""
    from ..viz.figures import new_figure

    groups = layer["per_group"]
    x = np.arange(len(groups))
    fig = new_figure(max(5.5, len(groups) * 0.12 + 2), 3.2)
    ax = fig.add_subplot()
    for key, colour, shift in (("variance_before", "tab:blue", -0.2), ("variance_after", "tab:orange", 0.2)):
        mean = np.array([g[key]["mean"] or 0.0 for g in groups])
        std = np.array([g[key]["std"] or 0.0 for g in groups])
        ax.errorbar(x + shift, mean, yerr=std, fmt="o", markersize=3, capsize=2, color=colour,
                    label=key.replace("variance_", "") + " SGE", linewidth=0.8)
    ax.set_xlabel("group")
    ax.set_ylabel("variance of the group's activations")
    ax.set_title(f"{name}: per-image variance per group (mean ± std over images)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1f2328;
line-height:1.45}
header{background:#1f2a44;color:#fff;padding:1.2em 2em}header h1{margin:0 0 .3em;font-size:1.6em}
header p{margin:.2em 0;color:#d0d7e6}header a{color:#9cc3ff}header p.note{color:#ffd98a;font-size:.95em}
main{max-width:1280px;margin:0 auto;padding:1em 2em 3em}
section,details.layer{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:.8em 1.2em;margin:1em 0}
h2{font-size:1.25em;margin:.3em 0 .6em}
nav{position:sticky;top:0;background:#f6f7f9ee;padding:.6em 0;z-index:1;border-bottom:1px solid #dfe3ea}
nav a{display:inline-block;margin:.15em .3em .15em 0;padding:.2em .7em;border-radius:999px;background:#e4e9f2;
color:#1f2a44;text-decoration:none;font-size:.9em}nav a:hover{background:#c9d6ee}
summary{cursor:pointer;font-weight:600;font-size:1.1em;padding:.2em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:calc(50% - .5em);border:1px solid #eee}
table{border-collapse:collapse;font-size:.85em;width:100%;margin-top:.8em}
th{background:#eef1f6;text-align:left;position:sticky;top:2.6em}
td,th{border-bottom:1px solid #e6e9ef;padding:4px 8px;vertical-align:top}tr:hover td{background:#fafbfd}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}img{max-width:100%}
.ood{display:inline-block;background:#dc1414;color:#fff;border-radius:4px;padding:0 .35em;font-size:.8em;
font-weight:600;margin-right:.3em}.note{color:#59636e;font-size:.9em}
"""

# Opens the layer a link (or the page's address) points at: a closed <details> hides its contents.
OPEN_TARGET = """
function openTarget(){var id=decodeURIComponent(location.hash.slice(1));var el=id&&document.getElementById(id);
if(el&&el.tagName==='DETAILS'){el.open=true;el.scrollIntoView();}}
window.addEventListener('hashchange',openTarget);window.addEventListener('DOMContentLoaded',openTarget);
"""


def index_html(summary: dict, figures: dict, pictures: bool) -> str:
    """One self-contained page: overview, the out-of-domain verdicts, Fig. 2, then per layer its figures and a
    table of its groups (links in the layer bar open the layer)."""
    e = html.escape
    ood = summary.get("out_of_domain") or {"detector": None, "images": [], "count": 0, "left_out": False}
    rejected = {i["image"] for i in ood["images"] if i["out_of_domain"]}

    def name(image: str) -> str:
        return ("<span class='ood' title='out of domain'>OOD</span>" if image in rejected else "") + e(image)

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>SGE dissection</title>",
        f"<style>{STYLE}</style><script>{OPEN_TARGET}</script></head><body>",
        f"<header><h1>SGE dissection: {summary['images']} images</h1>",
        f"<p>Model: {e(str(summary['model'].get('name')))} · top-{summary['top_k']} images per group · "
        f"{len(summary['skipped'])} inputs skipped · every number in <a href='summary.json'>summary.json</a></p>"
        + "".join(f"<p class='note'><b>Note:</b> {e(note)}</p>" for note in summary["model"].get("notes", []))
        + "</header><main>",
    ]
    if ood["detector"] is None:
        parts.append("<section><h2>Out-of-domain verdict</h2><p>This model carries no out-of-domain detector "
                     "(gates only): no image has a verdict, and the gates of images unlike its training data "
                     "are shown like any other.</p></section>")
    else:
        listed = "".join(f"<li>{e(i['image'])} ({i['value']:.3g})</li>" for i in ood["images"] if i["out_of_domain"])
        action = ("left out of every number and picture" if ood["left_out"] else
                  "marked <span class='ood'>OOD</span> and framed in red in the pictures")
        parts.append(f"<section><h2>Out-of-domain verdict</h2><p>{ood['count']} of {len(ood['images'])} images "
                     f"are out of domain ({e(ood['detector'].get('description', ood['detector']['score']))} above "
                     f"{ood['detector']['threshold']:.3g}): {action}.</p>"
                     + (f"<details><summary>Out-of-domain images</summary><ul>{listed}</ul></details>" if listed
                        else "") + "</section>")
    parts += _true_classes_section(summary.get("true_classes"))
    parts += _faithfulness_section(summary.get("faithfulness"))
    if summary["skipped"]:
        parts.append("<section><details><summary>Skipped inputs</summary><ul>" + "".join(
            f"<li>{e(s['path'])}: {e(s['reason'])}</li>" for s in summary["skipped"]) + "</ul></details></section>")
    for layer, path in figures.get("fig2", {}).items():
        parts.append(f"<section><h2>Fig. 2 ({e(layer)}): what a group finds in its top images</h2>"
                     f"<img src='{e(path)}' alt='Fig. 2 of {e(layer)}'><p class='note'>Each column is one image, "
                     "named above it; the colour is the group's vector length before and after SGE.</p></section>")
    parts.append("<nav>Layers: " + "".join(f"<a href='#{_safe(n)}'>{e(n)}</a>" for n in summary["layers"]) +
                 "</nav>")
    for lname, layer in summary["layers"].items():
        parts.append(f"<details class='layer' id='{_safe(lname)}'><summary>{e(lname)}: {layer['groups']} groups, "
                     f"{layer['height']}x{layer['width']} cells</summary><div class='figs'>")
        for key in ("fig3", "fig4"):
            if lname in figures.get(key, {}):
                parts.append(f"<img src='{e(figures[key][lname])}' alt='{key} of {e(lname)}'>")
        parts.append("</div><table><tr><th>group</th><th>gate mean</th><th>gate std</th><th>variance before</th>"
                     "<th>variance after</th><th>mask AUC</th><th>top images (score)</th></tr>")
        for g in layer["per_group"]:
            def f(v):
                return "–" if v is None else f"{v:.4g}"
            top = ", ".join(f"{name(t['image'])} ({t['score']:.3g})" for t in g["top"])
            picture = (f"<br><img loading='lazy' src='groups/{_safe(lname)}/g{g['group']:02d}.png' "
                       f"alt='top patches of group {g['group']}'>" if pictures and summary["images"] else "")
            parts.append(f"<tr><td class='num'>{g['group']}</td><td class='num'>{f(g['gate_mean'])}</td>"
                         f"<td class='num'>{f(g['gate_std'])}</td>"
                         f"<td class='num'>{f(g['variance_before']['mean'])} ± {f(g['variance_before']['std'])}</td>"
                         f"<td class='num'>{f(g['variance_after']['mean'])} ± {f(g['variance_after']['std'])}</td>"
                         f"<td class='num'>{f(g['mask_auc'])}</td><td>{top}{picture}</td></tr>")
        parts.append("</table></details>")
    parts.append(f"<p class='note'>Length histogram edges: 0, then the square roots of 10^(j/10 - 6) "
                 f"rounded to 8 significant bits, j = 0..{len(LENGTH_EDGES) - 2} (~1e-3 to ~1e4, 20 bins per "
                 "decade).</p></main></body></html>")
    return "\n".join(parts)


def _true_classes_section(block: dict | None) -> list[str]:
    """The report's "True classes" section: the model's answer beside each known true class, with a right
    or wrong mark; nothing when no image has a known true class."""
    if not block or not block["count"]:
        return []
    e = html.escape
    rows = "".join(f"<li>{e(i['image'])}: true class {e(i['true_class'])} "
                   + ("✓" if i["right"] else f"✗ (model says {e(i['predicted'])}, {i['probability']:.0%})")
                   + "</li>" for i in block["images"])
    return [f"<section><h2>True classes</h2><p>{block['right']} of {block['count']} shipped example scenes "
            f"classified right (the model's top-1 class). The others' true classes are not known.</p>"
            f"<details><summary>Per image</summary><ul>{rows}</ul></details></section>"]


def _faithfulness_section(block: dict | None) -> list[str]:
    """The report's "Faithfulness" section: per layer (mean gate) and per group of the last layer the mean gap
    and the share of images per verdict, the groups ranked by mean gap; nothing when it was not run."""
    if not block or not block.get("images"):
        return []
    e = html.escape
    banded = block["random_band"] is not None
    heads = "".join(f"<th>{e(v)}</th>" for v in VERDICTS) if banded else ""

    def row(label: str, r: dict) -> str:
        se = "" if r["se"] is None else f" ± {r['se']:.3f}"
        cells = "".join(f"<td class='num'>{r['verdicts'][v]:.0%}</td>" for v in VERDICTS) if banded else ""
        return (f"<tr><td>{e(label)}</td><td class='num'>{r['mean_gap']:+.3f}{se}</td>"
                f"<td class='num'>{r['positive']:.0%}</td>{cells}</tr>")

    table = f"<tr><th>map</th><th>mean gap</th><th>gap &gt; 0</th>{heads}</tr>"
    layers = "".join(row(f"{name} mean gate", r) for name, r in block["layers"].items()) + row("Grad-CAM", block["cam"])
    by_gap = {g["group"]: g for g in block["groups"]}
    groups = "".join(row(f"group {g}", by_gap[g]) for g in block["ranking"])
    band = block["random_band"]
    said = (f"Random pixel orders on the model's example images: gap {band['mean']:+.3f}, band {band['low']:+.3f} "
            f".. {band['high']:+.3f}." if banded else "The model has no example images: no random band, no verdicts.")
    return [f"<section><h2>Faithfulness: do the gates point at the evidence?</h2><p>{block['images']} images, each "
            f"explained for its top-1 class; gap = insertion AUC − deletion AUC ({e(block['definition'])}). {said}</p>"
            f"<table>{table}{layers}</table><h3>{e(block['group_layer'])}: groups ranked by mean gap</h3>"
            f"<table>{table}{groups}</table></section>"]
