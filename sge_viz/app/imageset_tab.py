"""The "Image set" tab: dissect several images or a zip at once (``sge_viz.dissect``) and show what each
group does across them: the group gallery (the paper's Fig. 2), Figs. 3-4, and the report as a zip.

``build_imageset_tab(service)`` lays the tab out inside the page's ``gr.Tabs``; ``wire_imageset_tab(tab,
service)`` connects it and registers the named endpoint ``/dissect`` (files, use_examples, model, top_k) ->
(summary, fig2, fig3, fig4, report zip).
Limits: at most ``SGE_VIZ_MAX_SET_IMAGES`` images per request; zips obey ``SGE_VIZ_MAX_ARCHIVE_MB`` and
``SGE_VIZ_MAX_ZIP_RATIO``; each file the upload limit (``sge_viz.io.limits``).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import SGEVizError
from ..io.examples import item_true_classes, known_examples
from ..io.limits import current_limits
from ..io.tempfiles import download_folder
from ..models.factory import LoadedModel
from .catalogue import ModelService
from .handlers import user_errors

MAX_TOP_K = 32  # top images per group: the slider's end and the API's limit


def _upload_paths(files: Any) -> list[Path]:
    if not files:
        return []
    out = []
    for f in files if isinstance(files, list) else [files]:
        path = f.get("path") if isinstance(f, dict) else getattr(f, "name", f)
        if path:
            out.append(Path(str(path)))
    return out


def _stage(uploads: list[Path], folder: Path) -> list[str]:
    """The inputs ``collect`` reads for these uploads: one folder of the images and masks (uploads land in
    separate temporary folders; side by side again, masks find their images) and each .zip on its own
    (an archive inside a folder input is refused, so a zip is never put into the folder)."""
    from ..io.inputs import is_zip

    staging, archives = folder / "inputs", folder / "archives"
    staging.mkdir()
    archives.mkdir()
    inputs, taken = [], set()
    for path in uploads:
        if path.name in taken:
            raise SGEVizError(f"Two uploads are named {path.name!r}: rename one.")
        taken.add(path.name)
        if is_zip(path):
            target = archives / path.name
            inputs.append(str(target))
        else:
            target = staging / path.name
        shutil.copyfile(path, target)
    if any(staging.iterdir()):
        inputs.insert(0, str(staging))
    return inputs


def _for_visitors(text: str, folder: Path) -> str:
    """``text`` without the server's temporary folders: names relative to what the visitor uploaded."""
    for root in (folder / "inputs", folder / "archives", folder):
        text = text.replace(f"{root}{os.sep}", "").replace(str(root), "the upload")
    return text


def _public_model(loaded: LoadedModel) -> LoadedModel:
    """``loaded`` with ``source`` reduced to the file's name: summary.json never shows a server path."""
    source = loaded.source
    if os.sep in source or "/" in source:
        source = Path(source).name
    return dataclasses.replace(loaded, source=source)


def _api_summary(summary: dict) -> dict:
    """summary.json as the endpoint returns it: each skipped entry's ``path`` is called ``input``.

    gradio_client takes any dict of an output with a string ``path`` for a file of the server and tries to
    download it (a 403 that fails the whole call), so a skipped input would break every API call.
    """
    skipped = [{"input": s["path"], "reason": s["reason"]} for s in summary["skipped"]]
    return {**summary, "skipped": skipped}


def dissect_set(service: ModelService, files: Any, use_examples: bool, model: str, top_k: float,
                progress: gr.Progress | None = None, faithfulness: bool = False) -> tuple[dict, str, str, str, str]:
    """Dissect uploads (images, masks ``<stem>_mask.png``, zips) or the example set with ``model``;
    ``faithfulness``: also each image's deletion and insertion gaps (summary.json's "faithfulness").

    Returns (summary.json as a dict, Fig. 2 path, Fig. 3 path, Fig. 4 path of the deepest layer, report zip);
    in the dict a skipped entry is ``{"input", "reason"}`` (summary.json's ``path``: see ``_api_summary``).
    Every message and the summary name uploads as the visitor named them (an image's file name, a zip member
    as ``archive.zip:member``) and the model's file by its name: no server path reaches a visitor.
    """
    folder = download_folder()
    try:
        return _dissect_set(service, files, use_examples, model, top_k, progress, folder, faithfulness)
    except SGEVizError as exc:
        raise SGEVizError(_for_visitors(str(exc), folder)) from exc


def _dissect_set(service, files, use_examples, model, top_k, progress, folder: Path, faithfulness: bool = False):
    from ..dissect.engine import run_local
    from ..dissect.report import write_report
    from ..explain.faithfulness import Removal, example_band
    from ..io.inputs import collect

    limits = current_limits()
    loaded = service.get(service.resolve(model or service.default))
    if use_examples:
        inputs = [str(p) for p in known_examples(loaded.config)]
    else:
        uploads = _upload_paths(files)
        if not uploads:
            raise SGEVizError("No images given: upload several images (or a .zip), or tick the example set.")
        inputs = _stage(uploads, folder)
    found = collect(inputs, limits)
    if len(found.items) > limits.max_set_images:
        raise SGEVizError(f"{len(found.items)} images, over the limit of {limits.max_set_images} per request "
                          "(SGE_VIZ_MAX_SET_IMAGES): use the command line (sge-viz dissect) for large sets.")
    k = int(top_k or 6)
    if not 1 <= k <= MAX_TOP_K:
        raise SGEVizError(f"Top-k {k} is outside 1..{MAX_TOP_K}.")
    total, done = len(found.items), [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(done[0] / total, desc=f"{done[0]}/{total} images")

    removal = Removal() if faithfulness and loaded.config.classifies else None
    band = example_band(loaded, removal) if removal is not None else None
    partial = run_local(loaded, found.items, k, batch_size=8, progress=tick, truths=item_true_classes(found.items),
                        faithfulness=removal)
    partial.skipped = sorted(({"path": _for_visitors(s["path"], folder), "reason": _for_visitors(s["reason"], folder)}
                              for s in found.skipped + partial.skipped), key=lambda s: (s["path"], s["reason"]))
    out = folder / "report"
    summary = write_report(out, partial, _public_model(loaded), found.items, faithfulness=removal, band=band)
    if not summary["images"]:
        raise SGEVizError("None of the images could be read: " +
                          "; ".join(f"{s['path']}: {s['reason']}" for s in summary["skipped"][:3]))
    deepest = list(summary["layers"])[-1]
    archive = shutil.make_archive(str(folder / "sge-dissection"), "zip", root_dir=out)
    fig = out / "figures"
    return (_api_summary(summary), str(fig / f"fig2_{deepest}.png"), str(fig / f"fig3_{deepest}.png"),
            str(fig / f"fig4_{deepest}.png"), os.fspath(archive))


class ImageSetTab:
    """The tab's components (set by ``build_imageset_tab``)."""

    files: gr.File
    use_examples: gr.Checkbox
    faithfulness: gr.Checkbox
    model: gr.Dropdown
    top_k: gr.Slider
    run: gr.Button
    fig2: gr.Image
    fig3: gr.Image
    fig4: gr.Image
    report: gr.File
    summary: gr.JSON


def build_imageset_tab(service: ModelService) -> ImageSetTab:
    """The "Image set" tab's components, laid out inside an open ``gr.Tabs``; ``wire_imageset_tab`` connects
    them."""
    limits = current_limits()
    c = ImageSetTab()
    with gr.Tab("Image set", id="imageset", elem_id="imageset-tab"):
        gr.Markdown("What does each group do **across many images**? Upload several images (masks as "
                    "`<name>_mask.png` beside them are used for mask AUC) or a .zip, or use the example set. "
                    f"At most {limits.max_set_images} images per request; the command line "
                    "(`sge-viz dissect`) has no such limit.")
        with gr.Row():
            c.files = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath",
                              label="Images or a .zip", elem_id="set-files")
            with gr.Column():
                c.use_examples = gr.Checkbox(False, label="Use the example set instead", elem_id="set-examples",
                                             info="The examples the model knows: for the demo models the 12 "
                                                  "scenes with their masks, for ImageNet models the photos.")
                c.model = gr.Dropdown(service.choices, value=service.default, label="Model", elem_id="set-model")
                c.top_k = gr.Slider(1, MAX_TOP_K, value=6, step=1, label="Top images per group", elem_id="set-topk")
                c.faithfulness = gr.Checkbox(False, label="Faithfulness: deletion and insertion per image",
                                             elem_id="set-faithfulness",
                                             info="Does each layer's mean gate (and each group of the last layer) "
                                                  "point at the evidence? About 40 forwards per map and image: "
                                                  "summary.json's \"faithfulness\" and the report's section.")
                c.run = gr.Button("Dissect the set", variant="primary", elem_id="set-run")
        gr.Markdown("**Fig. 2 view:** the groups of the deepest layer that best track the object (highest "
                    "mask AUC, else most selective), each with its top images: vector length before vs after SGE.")
        c.fig2 = gr.Image(format="png", interactive=False, show_label=False, elem_id="set-fig2")
        with gr.Row():  # the titles above the pictures, not as panel labels over the figures' own titles
            with gr.Column():
                gr.Markdown("**Fig. 3 view:** vector lengths before / after SGE (deepest layer)")
                c.fig3 = gr.Image(format="png", interactive=False, show_label=False, elem_id="set-fig3", buttons=[])
            with gr.Column():
                gr.Markdown("**Fig. 4 view:** per-group variance before / after SGE (deepest layer)")
                c.fig4 = gr.Image(format="png", interactive=False, show_label=False, elem_id="set-fig4", buttons=[])
        c.report = gr.File(label="Report (index.html, summary.json, figures, groups) as a zip", interactive=False,
                           elem_id="set-report")
        c.summary = gr.JSON(label="summary.json", elem_id="set-summary")
    return c


def wire_imageset_tab(c: ImageSetTab, service: ModelService) -> None:
    """Connect the tab's button to ``dissect_set`` and register ``/dissect``; call inside the open Blocks."""

    @user_errors
    def handler(files, use_examples, model, top_k, faithfulness=False, progress=gr.Progress()):
        return dissect_set(service, files, bool(use_examples), model, top_k, progress, bool(faithfulness))

    c.run.click(handler, [c.files, c.use_examples, c.model, c.top_k, c.faithfulness],
                [c.summary, c.fig2, c.fig3, c.fig4, c.report],
                api_name="dissect", concurrency_limit=1,
                api_description="Dissect several images or a zip: summary.json, Figs. 2-4 and the report zip.")
