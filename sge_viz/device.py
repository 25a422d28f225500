"""Where the model runs: CUDA when present, else Apple's MPS, else the CPU."""
from __future__ import annotations

import torch

from .errors import SGEVizError


def pick_device(requested: str | None = None) -> torch.device:
    """``None``/"auto" picks the best available; otherwise the named device, checked."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise SGEVizError(f"Unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SGEVizError(f"Device {requested!r} was asked for but CUDA is not available here: use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SGEVizError(f"Device {requested!r} was asked for but MPS is not available here: use --device cpu.")
    return device


def describe_device(device: torch.device) -> str:
    """A short human label: the GPU's name, or CPU."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "GPU: Apple MPS"
    return "CPU"
