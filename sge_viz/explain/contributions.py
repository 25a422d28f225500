"""Per-group contributions to the target logit, from hooks on every SGE module, and what ablations need.

For SGE layer L with output y (1, C, h, w) and group g (channels c in g):

    contribution[L][g] = sum over c in g and all positions (i, j) of  dlogit_target/dy[c, i, j] * y[c, i, j]

in logit units (the logit is pre-softmax): gradient x activation, the first-order share of the logit that
flows through the group's output. Positive: the group's output raises the target's logit; negative: it
lowers it. The gradients come from the backward pass that pytorch-grad-cam runs for the CAM (one forward,
one backward for everything): ``SGETaps`` registers a tensor hook on each SGE output during the forward.

While open, the taps also keep, per SGE layer, its input x, its gate's spatial mean per group and the
residual block's identity branch, so an ablation can restart the network right after that layer.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..capture.hooks import HookScope
from ..capture.recorder import GateRecorder, find_sge_layers, first_path
from ..models.sge import sge_groups


@dataclass
class KeptLayer:
    """One SGE layer's tensors from the first pass (batch of 1), detached."""

    name: str  # e.g. "layer3.1.sge"
    groups: int
    block_name: str  # the residual block holding it, e.g. "layer3.1"
    block: nn.Module | None
    x: torch.Tensor | None = None  # SGE input (1, C, h, w)
    gate: torch.Tensor | None = None  # (G, h, w), in (0, 1)
    block_input: torch.Tensor | None = None  # the block's input (1, C_in, H, W)
    downsampled: torch.Tensor | None = None  # the block's downsample(input) when it has one
    contribution: torch.Tensor | None = None  # (C,) float64 per channel, set during the backward pass
    _y: torch.Tensor | None = field(default=None, repr=False)

    @property
    def identity(self) -> torch.Tensor:
        """The block's skip branch: its input, or downsample(input)."""
        has_downsample = self.block is not None and getattr(self.block, "downsample", None) is not None
        return self.downsampled if has_downsample else self.block_input


class SGETaps(HookScope):
    """Context manager: hooks every SGE layer of ``model`` (and its residual block) while open.

    Only forwards run on this thread inside the ``with`` block are recorded (a ContextVar marks the
    active taps), so other requests on the same shared model are neither seen nor changed. The first
    SGE output that does not require grad is replaced by an equal leaf that does, so the backward
    pass reaches every SGE output without gradients on the input or the parameters. Outputs are
    otherwise unchanged. Each layer's gate comes from a ``GateRecorder`` open on the same forward (the
    module's own sigmoid, checked, for every SGE form); layers it skips are left out of ``layers``.
    """

    def __init__(self, model: nn.Module, keep: bool = True, patterns: tuple[str, ...] = ()):
        self.model = model
        self.keep = keep
        self._recorder = GateRecorder(model, activations=False, keep_on_device=True, patterns=patterns)
        self._modules = _sge_layers(model, patterns)
        # Group counts not stored on the module (a --sge-layers module) are read from its gate later.
        self.layers = [KeptLayer(name, sge_groups(m) or 0, first_path(name).rpartition(".")[0],
                                 _parent(model, first_path(name)))
                       for name, m in self._modules.items()]
        super().__init__()

    def _register(self) -> None:
        for kept in self.layers:
            module = self._modules[kept.name]
            self._keep(module.register_forward_hook(self._output_hook(kept)))
            if self.keep and kept.block is not None:
                self._keep(kept.block.register_forward_pre_hook(self._block_hook(kept)))
                downsample = getattr(kept.block, "downsample", None)
                if isinstance(downsample, nn.Module):
                    self._keep(downsample.register_forward_hook(self._downsample_hook(kept)))

    def __enter__(self):
        self._recorder.__enter__()
        try:
            return super().__enter__()
        except BaseException:
            self._recorder.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._recorder.__exit__(*exc_info)

    def _closed(self) -> None:
        captures = self._recorder.captures
        for kept in self.layers:
            kept._y = None
            if kept.name in captures:
                kept.gate = captures[kept.name].gate[0]
        self.layers = [k for k in self.layers if k.gate is not None]

    def _output_hook(self, kept: KeptLayer):
        def hook(_module, inputs, output):
            if not self._mine():
                return None
            if not output.requires_grad and torch.is_grad_enabled():
                output = output.detach().requires_grad_(True)
            if self.keep:
                kept.x = inputs[0].detach()
            kept._y = output.detach()
            if output.requires_grad:
                output.register_hook(self._grad_hook(kept))
                # The network goes on with a copy: an in-place op after the layer (torchvision's ``out +=
                # identity``) changes the copy, not the tensor whose gradient the hook reads.
                return output.clone()
            return None
        return hook

    @staticmethod
    def _grad_hook(kept: KeptLayer):
        def hook(grad: torch.Tensor) -> None:
            y = kept._y
            kept.contribution = (grad.detach().double() * y.double())[0].sum(dim=(1, 2))  # (C,), grouped later
            kept._y = None  # not needed any more
        return hook

    def _block_hook(self, kept: KeptLayer):
        def hook(_module, inputs):
            if self._mine():
                kept.block_input = inputs[0].detach()
        return hook

    def _downsample_hook(self, kept: KeptLayer):
        def hook(_module, _inputs, output):
            if self._mine():
                kept.downsampled = output.detach()
        return hook

    # --- results ------------------------------------------------------------------

    def contributions(self) -> dict[str, np.ndarray]:
        """{layer: (G,) float64} in logit units; raises RuntimeError when no backward pass reached a layer."""
        missing = [k.name for k in self.layers if k.contribution is None]
        if missing:
            raise RuntimeError(f"no gradient reached {', '.join(missing)}: was the backward pass run?")
        out = {}
        for k in self.layers:
            groups = k.gate.shape[0] if k.gate is not None else k.groups
            out[k.name] = k.contribution.reshape(groups, -1).sum(dim=1).cpu().numpy()
        return out

    def gates(self) -> dict[str, np.ndarray]:
        """{layer: (G, h, w) float32 gate in (0, 1)} of the recorded forward."""
        return {k.name: k.gate.float().cpu().numpy() for k in self.layers}


_layer_cache: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _sge_layers(model: nn.Module, patterns: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """``find_sge_layers`` as a dict, looked up once per model and patterns (a loaded model's modules do
    not change)."""
    with _cache_lock:
        per_model = _layer_cache.setdefault(model, {})
        found = per_model.get(patterns)
        if found is None:
            found = per_model[patterns] = dict(find_sge_layers(model, patterns))
    return found


def _parent(model: nn.Module, name: str) -> nn.Module | None:
    parent = name.rpartition(".")[0]
    try:
        return model.get_submodule(parent) if parent else None
    except AttributeError:
        return None
