"""Where a model comes from, and the one path from there to a ``LoadedModel``: a registered name or a
checkpoint file (through ``models.create_model``), or the user's own network (``--model-def``, a pickled model,
``wrap_model``), which is probed with capture's recorder, so this room sits above ``capture``.

    ModelSource -> open_model -> LoadedModel
"""
from .source import InputOptions, ModelSource, open_model, source_from_dict
from .wrap import wrap_model

__all__ = ["InputOptions", "ModelSource", "open_model", "source_from_dict", "wrap_model"]
