"""The page's pictures and tables: pure functions of an ``Analysis`` that never touch the model.

Everything a user changes after an analysis (layer, group, colour map, opacity,
colour scale, ordering) redraws through these functions alone. Every gate picture carries the image's
out-of-domain verdict as a strip on top (``sge_viz.viz.verdict.mark``), not only the note above the predictions.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .. import viz
from ..capture.analysis import Analysis, LayerGates
from ..domain import Verdict, describe
from ..errors import SGEVizError
from ..metrics import gates as stats
from ..metrics.localisation import gate_mask_auc
from ..viz import figures, mosaic_tile
from ..viz.verdict import mark, unmark_y

# Gradio draws its download and fullscreen buttons over a picture's top-right corner: the verdict strip keeps
# its text clear of them.
CORNER_BUTTONS = 64


class Order(str, Enum):
    """How the mosaic orders a layer's groups."""

    MODEL = "model order"
    SELECTIVE = "most selective first"


class Scale(str, Enum):
    """Heatmap colour scale: the layer's own min..max (trained gates often sit in a narrow band, e.g.
    0.6-0.85, where 0..1 shows almost nothing), or the gate's full range 0..1 (same colours in every layer)."""

    LAYER = "this layer's range"
    FULL = "gate range 0 to 1"


class Contrast(str, Enum):
    """Colour scale of the enhanced/suppressed map (gate minus the group's mean gate)."""

    ABSOLUTE = "absolute: one fixed range for every group"
    RELATIVE = "relative: each group's own largest deviation"


class Cells(str, Enum):
    """How a gate map (h x w cells) is enlarged to the picture."""

    SMOOTH = "smooth (bilinear)"
    NEAREST = "true cells (nearest)"


CARD = "What this model knows"  # the title of the domain card, under the predictions
DIVERGING_RANGE = 0.25  # the absolute scale: gate - group mean on -0.25..+0.25 (a sigmoid gate lies in 0..1)
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "cividis", "turbo", "gray")


def group_order(layer: LayerGates, order: Order | str) -> list[int]:
    """The layer's group indices in the mosaic's order."""
    if Order(order) is Order.SELECTIVE:
        return list(stats.selectivity_order(layer.gate))
    return list(range(layer.groups))


def most_selective(layer: LayerGates) -> int:
    """The group whose gate varies most across the image relative to its mean (highest selectivity)."""
    return int(stats.selectivity_order(layer.gate)[0])


def default_layer(analysis: Analysis) -> str:
    """The layer the page opens on: the deepest SGE layer, where the gates act on what the network has
    recognised (in the demo models the only layer whose every group enhances the item; earlier layers often
    suppress it, see ``LAYER_NOTE``)."""
    return analysis.layer_names[-1]


def layer_note(analysis: Analysis) -> str:
    """The layer menu's note: which layer the page opens on, and why."""
    return LAYER_NOTE.format(deepest=analysis.layer_names[-1], count=len(analysis.layer_names))


LAYER_NOTE = ("The page opens on {deepest}, the deepest of the {count} SGE layers: there the gates act on what "
              "the network has recognised, and in the demo models every group enhances the item. Earlier "
              "layers' gates are less specific and often suppress the item (see How to read this).")


def view_image(analysis: Analysis) -> np.ndarray:
    """The network's view (H, W, 3) uint8 as the page draws over it (``viz.enlarged``: a shorter side below
    ``viz.MIN_SIDE`` enlarged by a whole factor), read-only. Enlarged once per analysis: every redraw of the
    page draws over it, and enlarging costs about as much as drawing a picture."""
    key = id(analysis)
    kept = _VIEWS.get(key)
    if kept is not None and kept[0]() is analysis:
        return kept[1]
    image = viz.enlarged(analysis.image)
    if image is not analysis.image:
        image.setflags(write=False)
    # Forgotten with the analysis: the weak reference's callback drops the entry when it is collected.
    _VIEWS[key] = (weakref.ref(analysis, lambda _ref: _VIEWS.pop(key, None)), image)
    return image


_VIEWS: dict[int, tuple[weakref.ref, np.ndarray]] = {}  # id(analysis) -> (weak ref to it, its view_image)


def view_mask(analysis: Analysis) -> np.ndarray | None:
    """The item mask at the size of ``view_image``, or None."""
    mask = analysis.mask
    if mask is None:
        return None
    height, width = view_image(analysis).shape[:2]
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)) >= 128


def _outlined(analysis: Analysis, picture: np.ndarray) -> np.ndarray:
    mask = view_mask(analysis)
    return picture if mask is None else viz.draw_outline(picture, mask)


def colour_range(lg: LayerGates, scale: Scale | str = Scale.LAYER) -> tuple[float, float]:
    """(vmin, vmax) of the gate heatmaps for a scale choice."""
    if Scale(scale) is Scale.LAYER:
        lo, hi = float(lg.gate.min()), float(lg.gate.max())
        if hi > lo:
            return lo, hi
    return 0.0, 1.0


def smooth(cells: Cells | str) -> bool:
    """Whether a Cells choice means bilinear upsampling."""
    return Cells(cells) is Cells.SMOOTH


def fmt(value: float) -> str:
    """One number format for gate values everywhere on the page: three decimals."""
    return f"{value:.3f}"


def render_mosaic(analysis: Analysis, layer: str, order: Order | str, cmap: str, alpha: float,
                  focus: int | None = None, scale: Scale | str = Scale.LAYER,
                  cells: Cells | str = Cells.SMOOTH) -> np.ndarray:
    """Every group's gate of one layer over the image, in the chosen order, the focused group framed."""
    lg = analysis.layer(layer)
    vmin, vmax = colour_range(lg, scale)
    return _marked(viz.mosaic(view_image(analysis), lg.gate, order=group_order(lg, order), cmap=cmap, alpha=alpha,
                           tile=mosaic_tile(lg.groups), highlight=focus, vmin=vmin, vmax=vmax, smooth=smooth(cells)),
                analysis.ood)


def render_layer_mean(analysis: Analysis, layer: str, cmap: str, alpha: float, scale: Scale | str = Scale.LAYER,
                      cells: Cells | str = Cells.SMOOTH) -> np.ndarray:
    """The layer's mean gate over all its groups (h, w) over the image, on the mosaic's colour scale."""
    lg = analysis.layer(layer)
    vmin, vmax = colour_range(lg, scale)
    mean = lg.gate.mean(axis=0, dtype=np.float64).astype(np.float32)
    return _marked(_outlined(analysis, viz.overlay(view_image(analysis), mean, cmap=cmap, alpha=alpha, vmin=vmin,
                                                vmax=vmax, smooth=smooth(cells))), analysis.ood)


OTHER_NONE = ("This model has no SGE module over a 1-D sequence or a 3-D volume: every gate it computes is over a "
              "2-D map and drawn above.")


def other_markdown(analysis: Analysis) -> str:
    """What the "1-D / 3-D gates" tab shows: each such module's gate shape, and how it is drawn."""
    lines = []
    for name, gate in analysis.other_gates.items():
        kind = ("a 1-D sequence: one strip per group along it" if gate.ndim == 2 else
                "a 3-D volume: every group on one depth slice at a time (the slider picks the slice)")
        lines.append(f"- **{name}**: {gate.shape[0]} groups x {' x '.join(map(str, gate.shape[1:]))} positions, over "
                     f"{kind}")
    return ("SGE modules over inputs that are not 2-D maps. Their gates (sigmoid, 0 to 1, on the full scale) are "
            "not drawn over the image and not in image-set summaries; they are in `gates.npz` and `stats.json` "
            "(\"other_layers\").\n\n" + "\n".join(lines))


def render_other(analysis: Analysis, layer: str, depth: int | None, cmap: str) -> np.ndarray:
    """The picture of a gate over a 1-D or 3-D input (``viz.figures.other_gate_figure``; ``depth``: one slice
    of a 3-D gate, None for a 1-D one) with the verdict strip, (H, W, 3) uint8."""
    if layer not in analysis.other_gates:
        raise SGEVizError(f"{layer!r} is not a module over a 1-D or 3-D input of this model; those are "
                          f"{', '.join(analysis.other_gates) or 'none'}.")
    fig = figures.other_gate_figure(layer, analysis.other_gates[layer], cmap=cmap, depth=depth)
    return _marked(figures.figure_pixels(fig), analysis.ood)


def mosaic_legend(analysis: Analysis, layer: str, cmap: str, scale: Scale | str = Scale.LAYER) -> np.ndarray:
    """The colour bar shared by the mosaic and the layer-mean map, saying which scale it is."""
    lg = analysis.layer(layer)
    vmin, vmax = colour_range(lg, scale)
    which = "this layer's range" if (vmin, vmax) != (0.0, 1.0) else "full range 0 to 1"
    return legend(cmap, f"gate (mosaic and layer mean), {which}", "", width=420, vmin=vmin, vmax=vmax)


def clicked_group(analysis: Analysis, layer: str, order: Order | str, x: int, y: int) -> int | None:
    """The group drawn at pixel (x, y) of the layer's mosaic in this order, or None (a gap, an empty cell or
    the verdict strip on top)."""
    lg = analysis.layer(layer)
    y = unmark_y(y)
    if y < 0:
        return None
    return viz.group_at(x, y, lg.groups, tile=mosaic_tile(lg.groups), order=group_order(lg, order),
                        image_shape=view_image(analysis).shape)


@dataclass
class FocusViews:
    """The pictures of one focused group."""

    overlay: np.ndarray  # gate over the image
    diverging: np.ndarray  # enhanced (red) vs suppressed (blue) relative to the group's mean gate
    activations: np.ndarray  # the group's vector length before | after SGE, with its colour bar
    gate_legend: np.ndarray
    diverging_legend: np.ndarray
    caption: str


def render_focus(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                 scale: Scale | str = Scale.LAYER, contrast: Contrast | str = Contrast.ABSOLUTE,
                 cells: Cells | str = Cells.SMOOTH) -> FocusViews:
    """The focused group's overlay, enhanced/suppressed map, before/after pair, legends and caption."""
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    image = view_image(analysis)
    gate = lg.gate[group]
    smooth_ = smooth(cells)
    g = stats.group_stats(lg.gate[group:group + 1])
    caption = (f"**{analysis.image_name}** · `{layer}` · group **{group}** of {lg.groups} · "
               f"gate map {gate.shape[0]}x{gate.shape[1]} · mean gate {fmt(g.mean[0])} · "
               f"spread {fmt(g.std[0])} · enhanced share {fmt(g.enhanced_share[0])} · "
               f"selectivity {fmt(g.selectivity[0])}")
    limit = viz.diverging_limit(gate, DIVERGING_RANGE if Contrast(contrast) is Contrast.ABSOLUTE else None)
    which = "absolute scale" if Contrast(contrast) is Contrast.ABSOLUTE else "relative: this group's own range"
    return FocusViews(
        overlay=_marked(_outlined(analysis, viz.overlay(image, gate, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax,
                                                     smooth=smooth_)), analysis.ood),
        diverging=_marked(_outlined(analysis, viz.diverging(image, gate, limit=limit, smooth=smooth_)), analysis.ood),
        activations=_marked(activation_picture(analysis, lg, group, cells), analysis.ood),
        gate_legend=legend(cmap, "gate: suppressed", "passed", vmin=vmin, vmax=vmax),
        diverging_legend=legend("bwr", f"gate - group mean ({which})", "", vmin=-limit, vmax=limit),
        caption=caption,
    )


def activation_picture(analysis: Analysis, lg: LayerGates, group: int, cells: Cells | str = Cells.SMOOTH) -> np.ndarray:
    """The group's vector length ||x_g(p)||_2 over its channels, before | after SGE, one colour scale, with its
    colour bar under the pair. Falls back to the signed channel sums when lengths were not captured."""
    before, after = lg.before_length, lg.after_length
    what = "vector length ||x_g(p)|| over the group's channels"
    if before is None or after is None:
        before, after, what = lg.before, lg.after, "activation summed over channels"
    before, after = before[group], after[group]
    vmin, vmax = viz.activation_range(before, after)
    pair = viz.activation_pair(view_image(analysis), before, after, smooth=smooth(cells), vmin=vmin, vmax=vmax)
    bar = legend("viridis", what, "", width=min(pair.shape[1], 480), vmin=vmin, vmax=vmax)
    return viz.stack([pair, bar])


def check_group(lg: LayerGates, group: int) -> int:
    """``group`` as an int when the layer has it, else the project's error naming the valid range."""
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
    bar = viz.colorbar(cmap, width=width, height=14, vmin=vmin, vmax=vmax, labels=ticks)
    canvas = Image.new("RGB", (width, bar.shape[0] + 16), (255, 255, 255))
    canvas.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, bar.shape[0] + 2), left, fill=(40, 40, 40))
    draw.text((width - draw.textlength(right) - 2, bar.shape[0] + 2), right, fill=(40, 40, 40))
    picture = np.array(canvas)
    picture.setflags(write=False)
    return picture


def compare_panel(analysis: Analysis, layer: str, group: int, cmap: str, alpha: float,
                  scale: Scale | str = Scale.LAYER, cells: Cells | str = Cells.SMOOTH) -> tuple[np.ndarray, str]:
    """One pinned (image, layer, group) view for the compare row, with its colour bar and caption (which
    scale, with its numbers: panels on "this layer's range" are not comparable colour for colour)."""
    lg = analysis.layer(layer)
    group = check_group(lg, group)
    vmin, vmax = colour_range(lg, scale)
    picture = _outlined(analysis, viz.overlay(view_image(analysis), lg.gate[group], cmap=cmap, alpha=alpha,
                                                 vmin=vmin, vmax=vmax, smooth=smooth(cells)))
    which = "layer range" if (vmin, vmax) != (0.0, 1.0) else "full range"
    bar = legend(cmap, f"gate, {which}", "", width=picture.shape[1], vmin=vmin, vmax=vmax)
    caption = f"{analysis.image_name} · {layer} · group {group} · {which} {fmt(vmin)}-{fmt(vmax)}"
    return _marked(viz.stack([picture, bar]), analysis.ood), caption


# --- words ---------------------------------------------------------------------------

DEFINITIONS = {
    "mean gate": "the group's gate averaged over the h x w positions, mean_p a(p). A sigmoid gate is at most 1, "
                 "so SGE only ever attenuates: 'enhanced' means attenuated less than the group's average.",
    "spread": "how much the gate varies across the image: the standard deviation over positions, "
              "sqrt(mean_p (a(p) - mean a)^2). 0 for a flat gate.",
    "selectivity": "spread relative to the mean, std / mean (coefficient of variation). The mosaic's "
                   "'most selective first' order and the default group use it.",
    "enhanced share": "share of positions whose gate is above the group's own mean, #{p: a(p) > mean a} / (h w). "
                      "Red pixels in the enhanced/suppressed map.",
    "mask AUC": "for the example scenes that come with the item's mask: ROC-AUC of the gate (enlarged bilinearly "
                "to the image) against the mask, P(gate at a random item pixel > gate at a random other pixel). "
                "1 = the group enhances exactly the item, 0.5 = no preference, below 0.5 = it suppresses the item.",
}


def definitions_markdown() -> str:
    """One line per statistic: its name, one sentence and its formula."""
    return "\n".join(f"- **{name}**: {text}" for name, text in DEFINITIONS.items())


HOW_TO_READ = f"""\
**What SGE computes.** Each SGE layer splits its feature map into G groups. For every position p, the group's
feature vector x_g(p) is compared (dot product) with the group's average vector; the comparison is normalised
over positions, scaled and shifted by two learned numbers, and squashed by a sigmoid into a gate a(p) in (0, 1).
The layer's output is x_g(p) * a(p). So a gate never amplifies: high means "passed", low means "attenuated".

**The pictures.**
- *Mosaic*: every group's gate over the image, one tile per group, on one colour scale (its bar says which:
  this layer's own min..max, or the gate's full 0..1). *Layer mean*: the gate averaged over all groups.
- *The group's gate over the image*: the focused group alone, same scale.
- *Enhanced vs suppressed*: the gate minus the group's mean gate. Absolute scale (default): -{DIVERGING_RANGE} to
  +{DIVERGING_RANGE} for every group, so a nearly flat gate looks nearly white and colours compare across groups;
  relative scale: each group stretched to its own largest deviation (the legend prints the range), which makes
  even a flat gate look vivid. Drawn over a grey copy of the image, so every colour comes from the gate.
- *Before vs after SGE*: at each position, the length of the group's feature vector ||x_g(p)||_2 over its
  channels, before and after the gate, on one colour scale. After = before x a(p), so where the gate is low the
  right picture darkens.
- *True cells (nearest)* shows each gate value as one flat block (an 8x8 map is 64 blocks); *smooth* interpolates.
- A green outline marks the item on the example scenes that ship a mask.

**The numbers.**
{definitions_markdown()}

**Is it a finding or a bug?** A gate map means something only for images of the model's domain (the card "{CARD}"
under the predictions says what that is; the out-of-domain note above them says when an image is not). Within the
domain, the default model's own evaluation (5000 held-out randomised scenes, `checkpoints/MODEL_CARD.md`) measured,
per layer, the median mask AUC over groups: layer1.0 0.70 and layer1.1 0.65, layer2.0 0.58 and layer2.1 0.53 (these
gates prefer the item only mildly), layer3.0 0.42 (most of its groups *suppress* the item: they enhance what
differs from the group's average, often background or clutter, so a blue item there is expected), and layer3.1 0.93
with every group above 0.5 (the last gates enhance the item; mean gate on the item 2.17x that on clutter). The
original demo model (`sge_resnet_demo`) has its own figures in the same card.

**Does a gate point at what the network uses?** The Class evidence tab's *Faithfulness* panel measures it for the
image in front of you (deletion and insertion), and its *Sanity check* for the model. On 200 held-out scenes the
default model gets right: layer3.1's mean gate points at the evidence on 84% of them (Grad-CAM 96%, gap +0.61
against +0.62), layer3.0's points *away* on 64% (it enhances the background), and gates never change with the
class (Spearman 1.000 between the top-1 and top-2 class; Grad-CAM 0.58): read the contributions and Grad-CAM for
what carries a class. Layer3.1's gate keeps Spearman 0.77 with itself after its own stage is re-initialised:
part of it is the image's structure.
"""


def domain_markdown(domain: dict, label: str) -> str:
    """The domain card: what the model was trained on and what it recognises (``ModelConfig.domain()``)."""
    classes = domain.get("classes") or []
    shown = ", ".join(classes) if len(classes) <= 12 else ", ".join(classes[:8]) + f", ... ({len(classes)} in all)"
    size = domain.get("input_size")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    unknown = "No domain is known for this model: judge for yourself whether an image is one it was trained for."
    lines = [f"**What {label} knows.** {domain.get('description') or unknown}"]
    if domain.get("training_data"):
        lines.append(f"Trained on {domain['training_data']}.")
    how = (f"shorter side resized to {domain.get('resize_size')}, centre crop" if domain.get("resize_size")
           else "the whole image resized")
    gray = " grayscale" if domain.get("channels") == 1 else ""
    if domain.get("task", "classify") == "classify":
        lines.append(f"Classes ({domain.get('num_classes')}): {shown or 'unnamed'}.")
    else:
        lines.append("Gates only: its output is not one row of class scores, so there are no predictions.")
    lines.append(f"Input: {height}x{width}{gray} pixels ({how}).")
    if domain.get("layout_note"):
        lines.append(domain["layout_note"])
    ood = domain.get("ood")
    if domain.get("task", "classify") != "classify":
        pass  # no class scores: no out-of-domain verdict to speak of
    elif ood:
        lines.append(f"Out-of-domain check: {describe(ood['score'])}, threshold {ood['threshold']:.3g}.")
    else:
        lines.append("Out-of-domain check: none measured for this model, so nothing warns when an image is "
                     "outside what it knows.")
    return " ".join(lines)


def ood_markdown(analysis: Analysis) -> str:
    """The note above the predictions: is this image one the model was trained for? Followed by the
    analysis's notes (how the network was built, SGE layers skipped or not captured)."""
    return _verdict(analysis) + "".join(f"\n\n**Note:** {note}" for note in getattr(analysis, "notes", []))


def needs_card(analysis: Analysis) -> bool:
    """Whether the note sends the reader to the domain card: an image out of domain, or a classifier with no
    out-of-domain check."""
    return bool(analysis.predictions) and (analysis.ood is None or analysis.ood.out_of_domain)


def _verdict(analysis: Analysis) -> str:
    ood = analysis.ood
    if not analysis.predictions:
        return ("**Gates only:** this model's output is not one row of class scores, so there are no predictions "
                "and no out-of-domain verdict; the pictures show its SGE gates.")
    if ood is None:
        return ("**Out-of-domain check: not available** for this model (no threshold was measured). Judge from "
                f"the card \"{CARD}\" under the predictions whether this image is one it knows.")
    if ood.out_of_domain:
        return (f"⚠️ **Out of domain:** this image lies far from what the model was trained on "
                f"({describe(ood.score)} {ood.value:.3g} > threshold {ood.threshold:.3g}). Its predictions "
                f"and gate maps are not evidence about the image: the model only knows the domain described in "
                f"the card \"{CARD}\" under the predictions.")
    return (f"**Within the domain** as far as the model can tell ({describe(ood.score)} {ood.value:.3g} ≤ "
            f"threshold {ood.threshold:.3g}; about 5% of genuine in-domain images exceed it).")


# --- statistics ---------------------------------------------------------------------

TABLE_HEADERS = ["rank", "group", "selectivity", "mean gate", "spread (std)", "min", "max", "enhanced share"]


def group_table(analysis: Analysis, layer: str) -> tuple[list[str], list[list]]:
    """Groups ranked by selectivity, most selective first; with a mask-AUC column for example scenes."""
    lg = analysis.layer(layer)
    gs = stats.group_stats(lg.gate)
    auc = gate_mask_auc(lg.gate, analysis.mask) if analysis.mask is not None else None
    headers = TABLE_HEADERS + (["mask AUC"] if auc is not None else [])
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
    return stats.analysis_stats(analysis, analysis.mask)


def _marked(picture, ood: Verdict | None):
    """``viz.verdict.mark`` for a picture shown on the page: the strip's text stays clear of the corner buttons."""
    return mark(picture, ood, reserve=CORNER_BUTTONS)
