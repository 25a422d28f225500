"""The Gradio page: the header and the three tabs (Single image, Image set, Class evidence), each laid out and
wired by its own module (``single_tab``, ``imageset_tab``, ``evidence_tab``).

The named endpoints (``/analyze``, ``/models``, ``/dissect``, ``/explain``) are documented in the README's API
section.
"""
from __future__ import annotations

import gradio as gr

from ..io.limits import current_limits
from . import views
from .catalogue import ModelService
from .evidence_tab import build_evidence_tab, wire_evidence_tab
from .handlers import Handlers
from .imageset_tab import build_imageset_tab, wire_imageset_tab
from .single_tab import build_single_tab, wire_single_tab

# Each browser session keeps its Analysis (~11 MB for SGE-ResNet50) for an hour; beyond this many
# sessions the least recently used ones are dropped, which bounds the server's memory.
STATE_SESSIONS = 256
CSS = """
#mosaic img { cursor: crosshair; }
.caption-line { font-size: 0.9em; }
/* Compare panels: the caption (image, layer, group, scale) on its own lines above the picture, whole */
[id^="compare-"] label[data-testid="block-label"] { position: static; white-space: normal; overflow: visible;
  max-width: 100%; height: auto; }
"""


def build_ui(service: ModelService, concurrency: int | None = None, queue_size: int | None = None) -> gr.Blocks:
    """The whole page. Concurrency and queue size default to $SGE_VIZ_CONCURRENCY / $SGE_VIZ_QUEUE_SIZE.
    ``demo.handlers`` is the Single image tab's ``Handlers``."""
    limits = current_limits()
    concurrency = concurrency or limits.concurrency
    queue_size = queue_size or limits.queue_size
    h = Handlers(service)
    with gr.Blocks(title="SGE attention explorer", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## SGE attention explorer\nWhere does a Spatial Group-wise Enhance network look? Give an "
                    "image, then walk through every SGE layer and every group's gate. The gates mean something "
                    f"only for images of the model's own domain: see the card \"{views.CARD}\" under the "
                    "predictions.")
        with gr.Accordion("How to read this: what each picture and number means", open=False,
                          elem_id="how-to-read"):
            gr.Markdown(views.HOW_TO_READ, elem_id="definitions")
        if service.notice:
            gr.Markdown(f"> **Note:** {service.notice}", elem_id="notice")
        with gr.Tabs(elem_id="tabs"):
            build_single_tab(service, h.c)
            imageset = build_imageset_tab(service)
            evidence = build_evidence_tab(service)
        wire_single_tab(h, demo)
        wire_imageset_tab(imageset, service)
        wire_evidence_tab(evidence, image=h.c.image, model=h.c.model, layer=h.c.layer, group=h.c.group)
    demo.queue(default_concurrency_limit=concurrency, max_size=queue_size)
    demo.handlers = h  # for tests: the handlers behind the page
    return demo


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, share: bool = False,
           prevent_thread_lock: bool = False):
    """Start serving, with the upload limit of sge_viz.limits."""
    return demo.launch(server_name=host, server_port=port, share=share,
                       max_file_size=current_limits().max_upload_bytes,
                       prevent_thread_lock=prevent_thread_lock, show_error=True, css=CSS,
                       footer_links=["api", "gradio"], state_session_capacity=STATE_SESSIONS)
