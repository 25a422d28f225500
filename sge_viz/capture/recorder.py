"""Recording SGE gates with forward hooks.

    with GateRecorder(model) as rec:
        logits = model(x)
    captures = rec.captures   # {"layer1.0.sge": LayerCapture(gate, before, after, ...), ...}

Hooks only read tensors, so the model's output is bit-identical with and
without a recorder. Each recorder keeps what it captured on itself and only
records forwards run inside its own ``with`` block on its own thread (a
ContextVar marks the active recorder), so concurrent requests on one shared
model never see each other's gates.

Cost: the hooks keep what they capture on the model's device and in its dtype;
everything moves to the CPU as float32 once, when the ``with`` block closes
(one device sync instead of one per layer on a GPU). For the official module
the output's group sums are the gate times the input's group sums (y = x * a
with a constant over each group's channels, a > 0), and its squared vector
lengths the gate squared times the input's, so only the input is reduced.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.sge import SpatialGroupEnhance, is_sge_module
from .hooks import HookScope


@dataclass
class LayerCapture:
    """One SGE layer's gate and group activation maps, each (B, G, H, W) float32 on the CPU
    once the recorder has closed."""

    gate: torch.Tensor
    before: torch.Tensor | None = None  # sum over each group's channels, input of SGE
    after: torch.Tensor | None = None  # the same for SGE's output
    before_sq: torch.Tensor | None = None  # sum of squares over each group's channels (vector length^2), input
    after_sq: torch.Tensor | None = None  # the same for SGE's output
    channels: int = 0  # C, SGE's channel count (each group holds C / G of them); 0 when activations are off


def find_sge_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, module) of every SGE layer, in forward order of registration."""
    return [(name, m) for name, m in model.named_modules() if name and is_sge_module(m)]


def group_sums(x: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and sum of squares over each group's channels, each (B, G, H, W) float32, on x's device.

    The square root of the second is the group's vector length ||x_g(p)||_2 at every position p.
    """
    b, c, h, w = x.shape
    xg = x.detach().reshape(b, groups, c // groups, h, w)
    if xg.dtype == torch.float32:
        if xg.device.type == "cpu" and c // groups <= 8:
            # Few channels per group (the first stages): adding whole channel planes is ~1.7-3x faster on
            # a CPU than a reduction over the short strided axis, and needs no squared copy of x.
            total = xg[:, :, 0].clone()
            squares = total * total
            for k in range(1, c // groups):
                plane = xg[:, :, k]
                total += plane
                squares.addcmul_(plane, plane)
            return total, squares
        return xg.sum(dim=2), xg.square().sum(dim=2)
    # Half precision (GPUs): both reduce in float32 straight from the half values, without a float32 copy
    # of the whole activation; the sum of squares is the squared float32 norm (within a few ulp of it).
    return xg.sum(dim=2, dtype=torch.float32), torch.linalg.vector_norm(xg, dim=2, dtype=torch.float32).square()


class GateRecorder(HookScope):
    """Context manager that hooks every SGE layer of ``model`` while it is open.

    After the ``with`` block, ``captures`` maps each SGE layer's module path (e.g. "layer3.1.sge") to a
    ``LayerCapture`` of (B, G, H, W) float32 CPU tensors: ``gate`` in (0, 1) and, with ``activations=True``,
    the group sums and sums of squares of SGE's input and output. Hooks are removed on exit, also after an
    exception; the model's outputs are unchanged.
    """

    def __init__(self, model: nn.Module, activations: bool = True, keep_on_device: bool = False):
        self.model = model
        self.activations = activations
        # True: at exit the captures stay on the model's device (derived 'after' sums included) for
        # reductions there; only their results need cross to the host.
        self.keep_on_device = keep_on_device
        self.layers = find_sge_layers(model)
        self.captures: dict[str, LayerCapture] = {}
        super().__init__()

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.layers]

    def _register(self) -> None:
        self.captures = {}
        for name, module in self.layers:
            self._keep(module.sig.register_forward_hook(self._gate_hook(name, module.groups)))
            if self.activations:
                self._keep(module.register_forward_hook(self._activation_hook(name, module)))

    def _closed(self) -> None:
        self._to_cpu()

    def _to_cpu(self) -> None:
        """Finish what the hooks left on the device: derived 'after' sums, then float32 on the CPU."""
        for capture in self.captures.values():
            if capture.after is None and capture.before is not None and capture.gate.numel():
                gate = capture.gate.float()
                capture.after = gate * capture.before
                capture.after_sq = gate.square() * capture.before_sq
            if self.keep_on_device:
                continue
            capture.gate = capture.gate.float().cpu()
            for name in ("before", "after", "before_sq", "after_sq"):
                value = getattr(capture, name)
                if value is not None:
                    setattr(capture, name, value.cpu())

    def _gate_hook(self, name: str, groups: int):
        def hook(_module, _inputs, output):
            if self._mine():
                gate = output.detach()
                b = gate.shape[0] // groups
                # A copy, so that a later in-place op in the network cannot change what was captured.
                gate = gate.reshape(b, groups, *gate.shape[-2:]).clone()
                self.captures.setdefault(name, LayerCapture(gate)).gate = gate
        return hook

    def _activation_hook(self, name: str, module: nn.Module):
        # Only the official module is known to compute y = x * gate; look-alikes get their output summed.
        derive_after = type(module) is SpatialGroupEnhance
        groups = module.groups

        def hook(_module, inputs, output):
            if self._mine():
                capture = self.captures.setdefault(name, LayerCapture(torch.empty(0)))
                capture.before, capture.before_sq = group_sums(inputs[0], groups)
                capture.channels = int(inputs[0].shape[1])
                if derive_after:
                    capture.after = capture.after_sq = None
                else:
                    capture.after, capture.after_sq = group_sums(output, groups)
        return hook
