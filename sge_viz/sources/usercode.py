"""A model from the user's own code: ``path/to/file.py:callable`` or ``package.module:callable``.

This imports and runs the user's code, so it is reached only from the command line and from Python,
never from anything a browser sends.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ..errors import SGEVizError
from ..models.checkpoint import TORCHSCRIPT


def parse_kwargs(text: str | None) -> dict:
    """``--model-kwargs`` JSON -> a dict (``{}`` for None/empty); SGEVizError for anything else."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SGEVizError(f"--model-kwargs is not valid JSON ({exc}): give an object, e.g. "
                          "'{\"num_classes\": 10}'.") from exc
    if not isinstance(value, dict):
        raise SGEVizError(f"--model-kwargs must be a JSON object of keyword arguments, not {type(value).__name__}.")
    return value


def import_callable(spec: str):
    """The callable a SPEC names: ``file.py:name`` (the file's folder goes first on ``sys.path`` while it is
    imported, so its own imports work) or ``package.module:name`` (dots in ``name`` reach attributes)."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise SGEVizError(f"--model-def {spec!r} is not FILE.py:CALLABLE or package.module:CALLABLE "
                          "(e.g. my_models.py:build or torchvision.models:resnet18).")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(where)
    else:
        # Like ``python -m``: the working folder first, so a package beside the user's shell is found (an
        # installed console script does not put it on sys.path by itself).
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise SGEVizError(f"--model-def: cannot import {where} ({type(exc).__name__}: {exc}); is it "
                              "installed, or did you mean a file path ending in .py?") from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise SGEVizError(f"--model-def: {where} has no attribute {attr!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise SGEVizError(f"--model-def: {spec} is not callable.")
    return target


def _import_file(where: str):
    """Import a .py file. Inside a package (its folder has ``__init__.py``) it is imported as part of that
    package, so its relative imports (``from .common import *``) work; otherwise as a lone module with its
    folder first on ``sys.path``."""
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise SGEVizError(f"--model-def: the file {where} does not exist.")
    root, parts = path.parent, [path.stem]
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if len(parts) > 1:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        try:
            return importlib.import_module(".".join(parts))
        except Exception as exc:
            raise SGEVizError(f"--model-def: importing {where} as {'.'.join(parts)} failed "
                              f"({type(exc).__name__}: {exc}).") from exc
    module_name = f"sge_viz_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    sys.path.insert(0, str(path.parent))
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise SGEVizError(f"--model-def: importing {where} failed ({type(exc).__name__}: {exc}).") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def build_user_model(spec: str, kwargs: dict | None = None) -> nn.Module:
    """Call the SPEC's callable with ``kwargs`` and check that it returns an ``nn.Module``."""
    factory = import_callable(spec)
    try:
        model = factory(**(kwargs or {}))
    except Exception as exc:
        raise SGEVizError(f"--model-def: calling {spec} failed ({type(exc).__name__}: {exc}); check "
                          "--model-kwargs.") from exc
    if not isinstance(model, nn.Module):
        raise SGEVizError(f"--model-def: {spec} returned a {type(model).__name__}, not a torch.nn.Module.")
    if isinstance(model, torch.jit.ScriptModule):
        raise SGEVizError(f"--model-def: {spec} returned a TorchScript module. {TORCHSCRIPT}. Return the Python "
                          "model (the nn.Module before torch.jit.script or torch.jit.trace).")
    return model
