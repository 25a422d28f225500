"""The one base class that owns forward hooks on a model: registration, removal and who records what.

Subclasses (``GateRecorder``, ``explain``'s ``SGETaps``) implement ``_register`` and check ``_mine()`` in
their hooks: only forwards run on this thread (or task) inside this scope's ``with`` block are recorded,
so concurrent requests on one shared model never see each other's tensors. Scopes may nest.
"""
from __future__ import annotations

import contextvars

import torch

_active: contextvars.ContextVar[tuple[HookScope, ...]] = contextvars.ContextVar("sge_viz_hook_scopes", default=())


class HookScope:
    """Context manager base: ``_register()`` on enter (hooks via ``_keep(handle)``), every hook removed on
    exit, also after an exception; ``_closed()`` runs last on exit."""

    def __init__(self) -> None:
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._token: contextvars.Token | None = None

    def _register(self) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        """What a subclass finishes once the hooks are gone (e.g. moving results to the CPU)."""

    def _keep(self, handle: torch.utils.hooks.RemovableHandle) -> None:
        self._handles.append(handle)

    def _mine(self) -> bool:
        return self in _active.get()

    def __enter__(self):
        try:
            self._register()
        except BaseException:
            self._remove()
            raise
        self._token = _active.set(_active.get() + (self,))
        return self

    def __exit__(self, *exc_info) -> None:
        if self._token is not None:
            _active.reset(self._token)
            self._token = None
        self._remove()
        self._closed()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
