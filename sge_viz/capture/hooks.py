"""The one base class that owns forward hooks on a model: registration, removal and who records what.

Subclasses (``GateRecorder``, ``explain``'s ``SGETaps``) implement ``_register`` and check ``_mine()`` in
their hooks: only forwards run on this thread (or task) inside this scope's ``with`` block are recorded,
so concurrent requests on one shared model never see each other's tensors. Scopes may nest.
"""
from __future__ import annotations

import contextvars
import threading
from contextlib import contextmanager

import torch
from torch import nn

_active: contextvars.ContextVar[tuple[HookScope, ...]] = contextvars.ContextVar("sge_viz_hook_scopes", default=())


_mode_guard = threading.Lock()
_evaluating: dict[int, list] = {}  # id(model) -> [scopes open on it, the modes to restore]


@contextmanager
def evaluating(model: nn.Module):
    """Run ``model`` in eval mode inside the block and restore every submodule's own mode afterwards.

    Concurrent blocks on one model share one switch: the model stays in eval mode until the last of
    them closes, so no forward ever runs in train mode half-way (a model left in train mode would give
    other gates and overwrite its BatchNorm statistics)."""
    key = id(model)
    with _mode_guard:
        state = _evaluating.get(key)
        if state is None:
            # Only the modules in train mode are switched (and switched back): a model already in eval mode
            # costs one walk.
            training = [m for m in model.modules() if m.training]
            state = _evaluating[key] = [0, training]
            for m in training:
                m.training = False
        state[0] += 1
    try:
        yield model
    finally:
        with _mode_guard:
            state[0] -= 1
            if state[0] == 0:
                for m in state[1]:
                    m.training = True
                del _evaluating[key]


class HookScope:
    """Context manager base: ``_register()`` on enter (hooks via ``_keep(handle)``), every hook removed on
    exit, also after an exception; ``_closed()`` runs last on exit. A subclass that sets ``self.model``
    has that model in eval mode while the scope is open (``evaluating``)."""

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._token: contextvars.Token | None = None
        self._eval = None

    def _register(self) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        """What a subclass finishes once the hooks are gone (e.g. moving results to the CPU)."""

    def _keep(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self._handles.append(handle)

    def _mine(self) -> bool:
        return self in _active.get()

    def __enter__(self):
        model = getattr(self, "model", None)
        if isinstance(model, nn.Module):
            self._eval = evaluating(model)
            self._eval.__enter__()
        try:
            self._register()
        except BaseException:
            self._remove()
            self._leave_eval()
            raise
        self._token = _active.set(_active.get() + (self,))
        return self

    def __exit__(self, *exc_info) -> None:
        if self._token is not None:
            _active.reset(self._token)
            self._token = None
        self._remove()
        self._leave_eval()
        self._closed()

    def _leave_eval(self) -> None:
        if self._eval is not None:
            self._eval.__exit__(None, None, None)
            self._eval = None

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
