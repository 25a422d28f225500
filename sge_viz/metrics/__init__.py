"""Numbers about gates: per-group statistics, depth profiles, stats.json, and localisation against masks."""
from .gates import GroupStats, analysis_stats, depth_profile, group_stats, histogram, selectivity_order
from .localisation import gate_mask_auc, roc_auc

__all__ = ["GroupStats", "analysis_stats", "depth_profile", "gate_mask_auc", "group_stats", "histogram", "roc_auc",
           "selectivity_order"]
