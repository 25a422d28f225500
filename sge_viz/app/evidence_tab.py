"""The "Class evidence" tab and the ``/explain`` endpoint: Grad-CAM beside the gates, which groups carry
the class, and what SGE's spatial pattern changes for the prediction (``sge_viz.explain``).

``build_evidence_tab(service)`` lays the tab out inside the open ``gr.Tabs``; ``wire_evidence_tab(tab,
image=..., model=..., layer=..., group=...)`` connects it to the Single image tab's image, model, layer and
group components and registers ``/explain``. It keeps its own per-session state. The network runs when the
tab is opened, on "Explain", when the target class changes, and (once the tab has been opened) when the image
or model changes; layer and group changes redraw from the kept evidence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ..errors import SGEVizError
from ..explain import Evidence, explain, resolve_target
from ..explain.figures import (
    ablation_figure,
    ablation_sentence,
    contribution_figure,
    faithfulness_figure,
    faithfulness_words,
    sanity_figure,
)
from ..explain.pictures import cam_picture, gate_picture, signed_mosaic
from ..io.images import open_image
from ..io.tempfiles import png_path
from .catalogue import ModelService, cropped_example_mask
from .handlers import upload_path, user_errors

log = logging.getLogger(__name__)

TOP1 = "top-1 class (predicted)"
NO_IMAGE = ("**No image yet.** Give one in the Single image tab (upload, paste or pick an example) and its class "
            "evidence appears here.")
TABLE_HEADERS = ["rank", "group", "contribution (logit)", "share of layer's |sum|", "gate vs CAM r", "sign"]
INTRO = """For the target class: **Grad-CAM** (pytorch-grad-cam's `GradCAM` on the last residual block, relative
0..1) beside the focused group's gate; every group's **contribution** = sum over its channels and positions of
d logit / d y × y at the SGE output y (logit units: > 0 the group's output raises the class's logit); the
**ablation** per layer = the class probability when that layer's gate is replaced by its spatial mean per group
(its scale kept, its spatial pattern removed); **gate vs CAM r** = Pearson correlation of the group's gate,
upsampled, with the CAM. Layer and group follow the Single image tab's selection; click a row to focus a group."""


FAITH_INTRO = """**Does the map point at what the network uses?** Pixels are removed in the order the map ranks them
(highest first) and the class probability is followed: **deletion** (removed first: a low area under the curve
is better) and **insertion** (put back first into the removed image: a high area is better); **gap** = insertion
AUC − deletion AUC. The verdicts compare each gap with the gaps of random pixel orders on this model's example
images (the *random band*, mean ± 2 SD, computed once per model and settings): *points at the evidence* (gap ≥
0.2 and ≥ 0.9 × Grad-CAM's), *above random*, *near random* (inside the band), *points away* (below it). Judged:
the focused group's gate, the layer's mean gate, Grad-CAM and, for the example scenes, the item mask. Cost: about
40 forwards per map; the first measurement for a model also computes its band (24 random orders: a few seconds
for the demo models, a few minutes for SGE-ResNet50 on a CPU), then kept."""
SANITY_INTRO = """**Do the gates depend on the trained weights, and on the class?** The model's parts are re-initialised
from the head to the stem; after each step every SGE layer's mean gate is compared with the trained one
(Spearman over positions, SSIM), SGE's own parameters kept or redrawn. Then the top-1 and top-2 class's maps
are compared. Runs on this model's example images (about a second per image on a CPU for the default model)."""


@dataclass(frozen=True)
class _Kept:
    key: tuple[str, str, int | None]  # (image path, model choice, target index or None)
    evidence: Evidence


class EvidenceTab:
    """The tab's components and handlers (one per page)."""

    def __init__(self, service: ModelService):
        self.service = service
        self._sanity: dict[str, Any] = {}  # model choice -> its sanity report (the same for every image)

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def target_choices(class_names: tuple[str, ...]) -> list[str]:
        """The target picker's entries: the top-1 class, then "index: name" for every class."""
        return [TOP1] + [f"{i}: {name}" for i, name in enumerate(class_names)]

    @staticmethod
    def parse_target(choice: Any) -> int | str | None:
        """A picker entry (or typed text) as a class index, a class name, or None for the top-1 class."""
        if choice in (None, "", TOP1):
            return None
        text = str(choice)
        head, sep, _ = text.partition(":")
        return int(head) if sep and head.strip().isdigit() else text

    def _explain(self, payload: Any, choice: str, target: Any, previous: _Kept | None) -> _Kept:
        source = upload_path(payload)
        if source is None:
            raise SGEVizError("No image yet: give one in the Single image tab first.")
        choice = choice or self.service.default
        loaded = self.service.get(choice)
        index = resolve_target(loaded.config, self.parse_target(target))
        key = (source[0], choice, index)
        if previous is not None and previous.key == key:
            return previous
        return _Kept(key, explain(loaded, open_image(source[0]), index))

    @staticmethod
    def _focus(ev: Evidence, layer: str | None, group: Any) -> tuple[str, int]:
        """The page's layer and group as this evidence has them: an unknown layer is the last SGE layer, a
        group that is not one of its groups the one contributing most to the class."""
        layer = layer if layer in ev.layers else ev.layers[-1]
        try:
            group = int(group)
        except (TypeError, ValueError):
            group = -1
        return layer, group if 0 <= group < len(ev.contributions[layer]) else ev.ranked(layer)[0]

    def _draw(self, kept: _Kept, layer: str | None, group: Any) -> dict:
        ev = kept.evidence
        layer, group = self._focus(ev, layer, group)
        contributions = ev.contributions[layer]
        correlation = ev.cam_correlation(layer)
        total = float(abs(contributions).sum()) or 1.0
        rows = [[rank, g, round(float(contributions[g]), 4), round(float(contributions[g]) / total, 3),
                 round(float(correlation[g]), 3), "for" if contributions[g] > 0 else "against"]
                for rank, g in enumerate(ev.ranked(layer), start=1)]
        import pandas as pd

        t = ev.target
        summary = (f"**'{t.label}'** (#{t.index}) p = **{t.probability:.3f}** · CAM at `{ev.cam_layer}` · "
                   f"`{layer}` group **{group}**: contribution {float(contributions[group]):+.4g} logit "
                   f"(rank {ev.ranked(layer).index(group) + 1} of {len(contributions)}), gate vs CAM r = "
                   f"{float(correlation[group]):.2f} · layer total {float(contributions.sum()):+.4g} logit · "
                   f"{ev.model_name}, {ev.seconds * 1000:.0f} ms")
        c = self
        return {
            c.cam: png_path(cam_picture(ev)),
            c.gate: png_path(gate_picture(ev, layer, group)),
            c.summary: summary,
            c.sentence: "**" + ablation_sentence(ev, layer) + "**",
            c.ablation: ablation_figure(ev, layer),
            c.ranking: contribution_figure(ev, layer, group),
            c.mosaic: png_path(signed_mosaic(ev, layer, highlight=group)),
            c.table: pd.DataFrame(rows, columns=TABLE_HEADERS),
        }

    def _full(self, kept: _Kept, layer: str | None, group: Any, target: Any) -> dict:
        loaded = self.service.get(kept.key[1])
        choices = self.target_choices(loaded.config.class_names)
        value = target if target in choices else TOP1
        out = self._draw(kept, layer, group)
        out.update({self.state: kept, self.opened: True, self.target: gr.Dropdown(choices=choices, value=value)})
        return out

    # --- events ----------------------------------------------------------------------

    def _explained(self, payload: Any, choice: str, target: Any, layer: str, group: Any,
                   previous: _Kept | None) -> dict:
        """Explain and draw; when this model or image has no class evidence (a gates-only model, no layer for
        Grad-CAM, ...), the reason as the tab's one sentence, the pictures cleared: never an error badge on
        every panel. The reason goes to the log too."""
        try:
            return self._full(self._explain(payload, choice, target, previous), layer, group, target)
        except SGEVizError as exc:
            log.info("class evidence unavailable: %s", exc)
            return {self.state: None, self.opened: True, self.summary: f"**No class evidence here.** {exc}",
                    self.sentence: "", self.cam: None, self.gate: None, self.ablation: None, self.ranking: None,
                    self.mosaic: None, self.table: None}

    @user_errors
    def run(self, payload: Any, choice: str, target: Any, layer: str, group: Any, previous: _Kept | None) -> dict:
        """Open the tab, press Explain or pick a target: explain (unless the same request is kept) and draw.
        Before any image: one sentence saying what to do, and nothing else changes (no error badges)."""
        if payload is None:
            return {self.summary: NO_IMAGE, self.opened: True}
        return self._explained(payload, choice, target, layer, group, previous)

    @user_errors
    def follow(self, payload: Any, choice: str, target: Any, layer: str, group: Any, previous: _Kept | None,
               opened: bool) -> dict:
        """A new image or model: explain again once the tab has been opened; before that, do nothing. The
        image removed: the kept evidence and its pictures go, the sentence says to give one."""
        if payload is None:
            return {self.state: None, self.summary: NO_IMAGE, self.sentence: "", self.cam: None, self.gate: None,
                    self.ablation: None, self.ranking: None, self.mosaic: None, self.table: None}
        if not opened:
            return {self.summary: gr.skip()}
        return self._explained(payload, choice, target, layer, group, previous)

    @user_errors
    def redraw(self, previous: _Kept | None, layer: str, group: Any) -> dict:
        """Layer or group changed on the page: redraw from the kept evidence, no network."""
        return {self.summary: gr.skip()} if previous is None else self._draw(previous, layer, group)

    @user_errors
    def measure(self, previous: _Kept | None, payload: Any, layer: str, group: Any, removal: str,
                step: float, road: bool = False) -> dict:
        """Deletion and insertion of the focused group's gate, the layer's mean gate, Grad-CAM and the mask
        (and ROAD when ``road``)."""
        if previous is None:
            raise SGEVizError("Explain an image first (open this tab with an image, or press Explain).")
        from ..explain.faithfulness import Removal, evidence_faithfulness, example_band

        loaded = self.service.get(previous.key[1])
        ev = previous.evidence
        layer, group = self._focus(ev, layer, group)
        settings = Removal(removal or "blur", step=float(step or 0.05))
        source = upload_path(payload)
        mask = cropped_example_mask(open_image(source[0]), loaded) if source is not None else None
        result = evidence_faithfulness(loaded, ev, layer, group, settings, example_band(loaded, settings), mask,
                                       road=bool(road))
        return {self.faith_plot: faithfulness_figure(result, ev.target.label),
                self.faith_words: faithfulness_words(result)}

    @user_errors
    def check_sanity(self, choice: str) -> dict:
        """The model's sanity report on its example images (kept per model: it does not depend on the image)."""
        from ..explain.faithfulness import example_views
        from ..explain.sanity import sanity

        choice = choice or self.service.default
        report = self._sanity.get(choice)
        if report is None:
            loaded = self.service.get(choice)
            views = example_views(loaded, limit=8)
            if not views:
                raise SGEVizError("This model has no example images of its own; run `sge-viz sanity IMAGES...` "
                                  "on images of yours.")
            report = self._sanity[choice] = sanity(loaded, views)
        import pandas as pd

        rows = [[r["layer"], *(f"{r[k + '_spearman']:+.2f} / {r[k + '_ssim']:.2f}"
                               for k in ("own_kept", "own_redrawn", "all_kept", "all_redrawn"))]
                for r in report.summary()]
        table = pd.DataFrame(rows, columns=["SGE layer", "own stage, SGE kept", "own stage, SGE redrawn",
                                            "everything, SGE kept", "everything, SGE redrawn"])
        words = "\n".join(f"- {line}" for line in report.findings())
        return {self.sanity_table: table, self.sanity_plot: sanity_figure(report),
                self.sanity_words: f"Spearman / SSIM with the trained mean gate, {report.images} example images.\n\n"
                                   + words}

    @staticmethod
    def click_row(evt: gr.SelectData) -> Any:
        """A row of the ranking focuses its group on the page (column 1 is the group)."""
        if not evt.row_value:
            return gr.skip()
        return int(evt.row_value[1])

    @user_errors
    def api_explain(self, image: Any, model: str, target: str):
        """/explain: evidence.json and the CAM picture of one image."""
        source = upload_path(image)
        if source is None:
            raise SGEVizError("No image given: pass one with handle_file(path_or_url).")
        loaded = self.service.get(self.service.resolve(model) if model else self.service.default)
        evidence = explain(loaded, open_image(source[0]), resolve_target(loaded.config, target or None))
        return evidence.to_json(), png_path(cam_picture(evidence))


def build_evidence_tab(service: ModelService) -> EvidenceTab:
    """The "Class evidence" tab's components, laid out inside an open ``gr.Tabs``. Returns the tab (its
    components and handlers); ``wire_evidence_tab`` connects it."""
    c = EvidenceTab(service)
    png = dict(format="png", interactive=False, show_label=False, buttons=["download", "fullscreen"])
    with gr.Tab("Class evidence", id="evidence", elem_id="evidence-tab") as c.tab:
        gr.Markdown(INTRO)
        with gr.Row():
            c.target = gr.Dropdown([TOP1], value=TOP1, label="Target class", elem_id="evidence-target", scale=3,
                                   filterable=True)
            c.button = gr.Button("Explain", variant="primary", elem_id="evidence-run", scale=1)
        c.summary = gr.Markdown("Open this tab with an image to see its class evidence.", elem_id="evidence-summary")
        with gr.Row():
            with gr.Column():
                gr.Markdown("**Grad-CAM over the image** (the class's evidence)")
                c.cam = gr.Image(label="Grad-CAM over the image", elem_id="evidence-cam", **png)
            with gr.Column():
                gr.Markdown("**The focused group's gate** (what SGE enhances)")
                c.gate = gr.Image(label="The focused group's gate", elem_id="evidence-gate", **png)
        c.sentence = gr.Markdown("", elem_id="evidence-sentence")
        with gr.Row():
            c.ablation = gr.Plot(label="Per-layer ablation: the gate's spatial pattern removed", format="png",
                                 elem_id="evidence-ablation", show_label=False)
            c.ranking = gr.Plot(label="The layer's groups ranked by contribution", format="png",
                                elem_id="evidence-ranking", show_label=False)
        with gr.Row():
            with gr.Column():
                gr.Markdown("**The layer's gates, most contributing group first** (frame: red for the class, "
                            "blue against)")
                c.mosaic = gr.Image(label="Gates by contribution", elem_id="evidence-mosaic", **png)
            c.table = gr.Dataframe(label="Groups ranked by contribution (click a row to focus it)",
                                   interactive=False, elem_id="evidence-table", max_height=420)
        with gr.Accordion("Faithfulness: deletion and insertion", open=False, elem_id="evidence-faith"):
            gr.Markdown(FAITH_INTRO)
            with gr.Row():
                c.faith_removal = gr.Radio(["blur", "mean"], value="blur", label="Removed pixels become",
                                           info="blur: a Gaussian-blurred copy (sigma = 1/8 of the side); mean: "
                                                "the image's mean colour", elem_id="evidence-faith-removal")
                c.faith_step = gr.Slider(0.05, 0.25, value=0.05, step=0.05, label="Share of pixels per step",
                                         elem_id="evidence-faith-step")
                c.faith_road = gr.Checkbox(False, label="Also ROAD", elem_id="evidence-faith-road",
                                           info="pytorch-grad-cam's ROAD: the class probability's change with the "
                                                "most / least relevant pixels imputed, 10..90%")
                c.faith_button = gr.Button("Measure", elem_id="evidence-faith-run")
            c.faith_words = gr.Markdown("", elem_id="evidence-faith-words")
            c.faith_plot = gr.Plot(format="png", show_label=False, elem_id="evidence-faith-plot")
        with gr.Accordion("Sanity check of this model: randomised weights, other classes", open=False,
                          elem_id="evidence-sanity"):
            gr.Markdown(SANITY_INTRO)
            c.sanity_button = gr.Button("Run the sanity check", elem_id="evidence-sanity-run")
            c.sanity_words = gr.Markdown("", elem_id="evidence-sanity-words")
            c.sanity_table = gr.Dataframe(interactive=False, elem_id="evidence-sanity-table")
            c.sanity_plot = gr.Plot(format="png", show_label=False, elem_id="evidence-sanity-plot")
        c.state = gr.State(None, time_to_live=3600)
        c.opened = gr.State(False, time_to_live=3600)
    return c


def wire_evidence_tab(c: EvidenceTab, *, image: gr.Image, model: gr.Dropdown, layer: gr.Dropdown,
                      group: gr.Slider) -> None:
    """Connect the tab's events to the Single image tab's image, model, layer and group components, and register
    ``/explain``; call inside the open Blocks."""
    hidden = dict(api_visibility="undocumented")
    with gr.Column(visible=False):
        api_in = [gr.Image(type="filepath", image_mode=None, label="image"),
                  gr.Textbox(value=c.service.default, label="model"),
                  gr.Textbox(value="", label="target")]
        api_out = [gr.JSON(), gr.Image(format="png")]
        api_btn = gr.Button()

    drawn = [c.cam, c.gate, c.summary, c.sentence, c.ablation, c.ranking, c.mosaic, c.table]
    full = drawn + [c.state, c.opened, c.target]
    inputs = [image, model, c.target, layer, group, c.state]
    run = dict(fn=c.run, inputs=inputs, outputs=full, preprocess=False, trigger_mode="always_last", **hidden)
    c.tab.select(**run)
    c.button.click(**run)
    c.target.input(**run)
    follow = dict(fn=c.follow, inputs=inputs + [c.opened], outputs=full, preprocess=False,
                  trigger_mode="always_last", **hidden)
    image.change(**follow)
    model.input(**follow)
    for control in (layer, group):
        # Raw values (preprocess=False): a group typed out of the slider's range is the page's to answer, with
        # one warning; validating it here too would put an error badge on every picture of this tab.
        control.change(c.redraw, [c.state, layer, group], drawn, preprocess=False, trigger_mode="always_last",
                       **hidden)
    c.table.select(c.click_row, None, [group], **hidden)
    c.faith_button.click(c.measure, [c.state, image, layer, group, c.faith_removal, c.faith_step, c.faith_road],
                         [c.faith_plot, c.faith_words], preprocess=False, **hidden)
    c.sanity_button.click(c.check_sanity, [model], [c.sanity_table, c.sanity_plot, c.sanity_words],
                          preprocess=False, **hidden)
    api_btn.click(c.api_explain, api_in, api_out, api_name="explain", preprocess=False,
                  api_description="evidence.json (target, Grad-CAM layer, per SGE layer the groups ranked by "
                                  "contribution and the ablated probability) and the CAM picture of one image.")
