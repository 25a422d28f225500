"""Grad-CAM by pytorch-grad-cam (``GradCAM``, ``ClassifierOutputTarget``) on the last residual block.

The library is used as published (pinned in requirements.txt), never re-implemented. Two details make it
safe on a model that the app shares between requests:

- its hooks go on a private ``nn.Identity`` ("tap") that the last block's output passes through only
  during this thread's forward (a ContextVar gate), so another request's forward never lands in its
  lists of activations and gradients;
- the model is wrapped, not changed: the wrapper's forward is the model's forward.

Grad-CAM (Selvaraju et al. 2017) as the library computes it for a block output A (1, K, h, w) and the
target logit: weights w_k = mean over positions of dlogit/dA_k; cam = relu(sum_k w_k A_k); the map is
scaled to [0, 1] (minus its minimum, over its maximum) and resized to the input size (OpenCV bilinear).
"""
from __future__ import annotations

import contextvars

import numpy as np
import torch
from torch import nn

METHOD = "gradcam"

_tapping: contextvars.ContextVar[_Tapped | None] = contextvars.ContextVar("sge_viz_cam_tap", default=None)


def last_block(model: nn.Module) -> tuple[str, nn.Module]:
    """(name, module) of the last residual block of an SGE-ResNet: ``layer4[-1]`` for SGE-ResNet50,
    ``layer3[-1]`` for the three-stage demo model. ValueError for a model without stages ``layerN``."""
    stages = getattr(model, "num_stages", None)
    if not isinstance(stages, int):  # e.g. torchvision's ResNets: the highest layerN that is a stage
        stages = max((int(n[5:]) for n, _ in model.named_children() if n.startswith("layer") and n[5:].isdigit()),
                     default=None)
    stage = getattr(model, f"layer{stages}", None) if isinstance(stages, int) else None
    if not isinstance(stage, nn.Sequential) or len(stage) == 0:
        raise ValueError("Grad-CAM's target here is the last residual block of an SGE-ResNet "
                         "(a model with num_stages and layer1..layerN); this model has none")
    return f"layer{stages}.{len(stage) - 1}", stage[-1]


def cam_target(model: nn.Module, name: str = "") -> tuple[str, nn.Module]:
    """(name, module) Grad-CAM looks at: ``name`` when given (``--cam-layer``), else the last residual
    block of an SGE-ResNet. Raises SGEVizError naming what to do."""
    from ..errors import SGEVizError

    if name:
        try:
            return name, model.get_submodule(name)
        except AttributeError:
            raise SGEVizError(f"--cam-layer {name!r} is not a module of this model; give a module path as "
                              "print(model) shows it (e.g. features.7).") from None
    try:
        return last_block(model)
    except ValueError:
        raise SGEVizError("This model has no ResNet stages (layer1..layerN) for Grad-CAM: name the layer to "
                          "look at with --cam-layer NAME (cam_layer= in wrap_model), e.g. its last conv block."
                          ) from None


class _Tapped(nn.Module):
    """``model`` whose ``block`` output runs through ``self.tap`` during this thread's forwards only."""

    def __init__(self, model: nn.Module, block: nn.Module):
        super().__init__()
        self.net = model
        self.tap = nn.Identity()
        self._handle = block.register_forward_hook(self._through_tap)

    def _through_tap(self, _module, _inputs, output):
        return self.tap(output) if _tapping.get() is self else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        token = _tapping.set(self)
        try:
            return self.net(x)
        finally:
            _tapping.reset(token)

    def close(self) -> None:
        self._handle.remove()


def gradcam(model: nn.Module, x: torch.Tensor, target: int | None, block: nn.Module) -> tuple[np.ndarray, torch.Tensor]:
    """Run pytorch-grad-cam's GradCAM on ``block`` for input ``x`` (1, 3, S, S).

    ``target``: class index, or None for the top-1 class (the library's own argmax). Returns the CAM
    (S, S) float32 in [0, 1] and the logits (1, classes), detached. The one forward and backward pass
    it runs is also what every tensor hook registered during the forward sees (``SGETaps``). Gradients
    must be enabled and something on the path must require grad (an input or an activation); the caller
    restores any state the library changes (training flags, parameters' ``.grad``).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tapped = _Tapped(model, block)
    cam = None
    try:
        cam = GradCAM(model=tapped, target_layers=[tapped.tap])
        targets = None if target is None else [ClassifierOutputTarget(int(target))]
        maps = cam(input_tensor=x, targets=targets)
        logits = cam.outputs.detach()
    finally:
        if cam is not None:
            cam.activations_and_grads.release()  # not ``with``: its __exit__ swallows IndexError
            cam.outputs = None  # drops the autograd graph
        tapped.close()
    return np.clip(np.asarray(maps[0], dtype=np.float32), 0.0, 1.0), logits
