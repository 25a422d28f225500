"""The Gradio app: model catalogue, examples, views (pure pictures), event handlers, page layout, server.

Import ``sge_viz.app.layout`` (or ``server``) for the page; this package's own import pulls in nothing heavy.
"""
