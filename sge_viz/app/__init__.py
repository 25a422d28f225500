"""The Gradio app: model catalogue, examples, views (pure pictures), the view settings, event handlers, one
module per tab (``single_tab``, ``imageset_tab``, ``evidence_tab``), the page's layout, server.

Import ``sge_viz.app.layout`` (or ``server``) for the page; this package's own import pulls in nothing heavy.
"""
