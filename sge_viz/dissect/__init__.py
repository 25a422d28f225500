"""Image sets: what each SGE group does across many images (mergeable summaries, the paper's Figs. 2-4).

The images come from ``sge_viz.io`` (``inputs`` finds them in files, folders and zips, ``feed`` reads
and crops them in worker processes, as for ``sge-viz analyze``); ``reduce`` turns one batch into a
``summary.Partial`` on the model's device (with each image's out-of-domain verdict, and what the report
draws for the top entries, ``pictures``), ``engine`` runs batches locally (resumable) or on Ray,
``report`` writes summary.json, the figures and index.html without running the network again.
"""
from .summary import LENGTH_EDGES, Partial, merge_all, summary_dict

__all__ = ["LENGTH_EDGES", "Partial", "merge_all", "summary_dict"]
