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
