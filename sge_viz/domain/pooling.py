"""Named modules' outputs averaged over positions, read during a forward: what the out-of-domain scores
take as features (``sge_viz.domain.detector``)."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..errors import SGEVizError


def average(output: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) -> (B, C) mean over positions; a (B, D) output as it is; float64 on the host."""
    return (output.mean(dim=(2, 3)) if output.ndim == 4 else output).double().cpu().numpy()


@contextmanager
def pooled_outputs(model: nn.Module, modules: Sequence[str], into: dict[str, list[np.ndarray]],
                   active: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """While open, every forward appends each named module's averaged output (``average``) to
    ``into[name]`` ("" names the model itself, whose output is the logits). ``active``: whether the
    current forward is the caller's (a model may serve other threads)."""
    found = dict(model.named_modules())
    missing = [m for m in modules if m not in found]
    if missing:
        raise SGEVizError(f"the out-of-domain score reads module(s) {', '.join(map(repr, missing))}, which this "
                          "model lacks: measure it again for this model with `python -m training.ood` (from a "
                          "source checkout).")

    def keep(name: str):
        def hook(_module, _inputs, output):
            if active():
                into.setdefault(name, []).append(average(output.detach()))
        return hook

    handles = [found[name].register_forward_hook(keep(name)) for name in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
