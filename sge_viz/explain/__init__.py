"""Class evidence beside the gates: Grad-CAM, which SGE groups carry the class, what SGE changes.

``explain(loaded, image, target=None) -> Evidence`` runs one forward and one backward pass (pytorch-grad-cam's
GradCAM on the last residual block; every SGE group's gradient x output from the same pass) and one batched
ablation per SGE layer. ``write_evidence`` writes the CLI's folder.
"""
from .evidence import Evidence, explain, pearson, resolve_target

__all__ = ["Evidence", "explain", "pearson", "resolve_target"]
