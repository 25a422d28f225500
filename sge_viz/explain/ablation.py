"""What SGE's spatial re-weighting changes for the prediction: one ablation per SGE layer.

Ablation of layer L: its gate a_g (h, w) is replaced by its spatial mean per group, mean_hw a_g, so the
group keeps its overall scale and loses its spatial pattern; every other layer is unchanged. The result
is the target's softmax probability with that one change.

Cost: each ablation restarts the network right after its layer, from tensors kept in the first pass
(the layer's input x and the block's identity branch): the block's last step relu(x * mean_gate +
identity), then the remaining blocks and the head. The ablations travel together as one batch that
grows by one row at each SGE block, so the blocks after layer L run once for all ablations before them.
"""
from __future__ import annotations

import contextvars

import torch
from torch import nn

from ..models.resnet import BasicBlock, Bottleneck
from .contributions import KeptLayer


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every residual block of an SGE-ResNet in forward order: [("layer1.0", block), ...]."""
    stages = getattr(model, "num_stages", None)
    if not isinstance(stages, int):
        raise ValueError("ablation restarts an SGE-ResNet (num_stages, layer1..layerN) after a layer; "
                         "this model is not one")
    return [(f"layer{i}.{j}", block) for i in range(1, stages + 1)
            for j, block in enumerate(getattr(model, f"layer{i}"))]


def head(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The SGE-ResNet's classifier on the last block's output (B, C, H, W): logits (B, classes)."""
    return model.fc(torch.flatten(model.avgpool(features), 1))


def flat_gate_output(kept: KeptLayer) -> torch.Tensor:
    """The block's output (1, C, h, w) with layer ``kept``'s gate replaced by its spatial mean per group."""
    if kept.x is None or kept.gate is None or kept.identity is None:
        raise RuntimeError(f"{kept.name}: the first pass kept no input, gate or identity to restart from")
    _, c, h, w = kept.x.shape
    mean_gate = kept.gate.mean(dim=(1, 2)).reshape(kept.groups, 1, 1, 1).to(kept.x.dtype)
    y = (kept.x.reshape(kept.groups, c // kept.groups, h, w) * mean_gate).reshape(1, c, h, w)
    return torch.relu(y + kept.identity)


def flat_gate_probabilities(model: nn.Module, kept: list[KeptLayer], target: int) -> dict[str, float]:
    """{SGE layer: the target's softmax probability in [0, 1] with that layer's gate flattened}.

    ``kept``: the layers recorded by ``SGETaps(model, keep=True)`` on one image, each in a residual
    block whose forward is relu(sge(...) + identity) (``BasicBlock``, ``Bottleneck``).
    """
    blocks = residual_blocks(model)
    starts: dict[str, KeptLayer] = {}
    for k in kept:
        if not isinstance(k.block, (BasicBlock, Bottleneck)) or k.block.sge is not model.get_submodule(k.name):
            raise ValueError(f"{k.name} is not the SGE module of an SGE-ResNet block; cannot restart after it")
        starts[k.block_name] = k
    state: torch.Tensor | None = None
    order: list[str] = []
    with torch.inference_mode():
        for name, block in blocks:
            if state is not None:
                state = block(state)
            k = starts.get(name)
            if k is not None:
                row = flat_gate_output(k)
                state = row if state is None else torch.cat([state, row])
                order.append(k.name)
        if state is None:
            return {}
        probs = head(model, state).float().softmax(dim=1)[:, target].cpu().tolist()
    return dict(zip(order, probs))


def is_sge_resnet(model: nn.Module, kept: list[KeptLayer]) -> bool:
    """Whether every kept layer is the SGE module of an SGE-ResNet block (the restart path applies)."""
    try:
        residual_blocks(model)
    except ValueError:
        return False
    return all(isinstance(k.block, (BasicBlock, Bottleneck)) and k.block.sge is model.get_submodule(k.name)
               for k in kept)


_flattening: contextvars.ContextVar[object | None] = contextvars.ContextVar("sge_viz_flatten", default=None)


def flat_gate_probabilities_any(model: nn.Module, x: torch.Tensor, kept: list[KeptLayer], modules: dict,
                                target: int) -> dict[str, float]:
    """``flat_gate_probabilities`` for any network, in one batched forward: row i of a batch of copies of
    ``x`` (1, C, H, W) has layer i's output replaced by its input times its gate's spatial mean per group
    (eval mode: rows do not interact). The hooks act on this call's forward only, so other requests on
    the same model are untouched."""
    kept = [k for k in kept if k.gate is not None]
    if not kept:
        return {}
    token = object()

    def flatten(row: int, mean_gate: torch.Tensor):
        def hook(_module, inputs, output):
            if _flattening.get() is not token:
                return None
            xin = inputs[0][row:row + 1]
            b, c, h, w = xin.shape
            groups = mean_gate.numel()
            output = output.clone()
            output[row:row + 1] = (xin.reshape(b, groups, c // groups, h, w)
                                   * mean_gate.view(1, groups, 1, 1, 1).to(xin.dtype)).reshape(b, c, h, w)
            return output
        return hook

    handles = [modules[k.name].register_forward_hook(flatten(i, k.gate.mean(dim=(1, 2))))
               for i, k in enumerate(kept)]
    mark = _flattening.set(token)
    try:
        with torch.inference_mode():
            logits = model(x.expand(len(kept), *x.shape[1:]).contiguous())
    finally:
        _flattening.reset(mark)
        for handle in handles:
            handle.remove()
    probs = logits.float().softmax(dim=1)[:, target].cpu().tolist()
    return {k.name: p for k, p in zip(kept, probs)}
