"""Image sets: what each SGE group does across many images (mergeable summaries, the paper's Figs. 2-4).

``inputs`` finds the images (files, folders, zips; hostile archives refused), ``reduce`` turns one
batch into a ``summary.Partial`` on the model's device (with each image's out-of-domain verdict, and
what the report draws for the top entries, ``pictures``), ``engine`` runs batches locally (resumable;
its reading workers end with it, ``lifeline``) or on Ray, ``report`` writes summary.json, the figures
and index.html without running the network again.
"""
from .summary import LENGTH_EDGES, Partial, merge_all, summary_dict

__all__ = ["LENGTH_EDGES", "Partial", "merge_all", "summary_dict"]
