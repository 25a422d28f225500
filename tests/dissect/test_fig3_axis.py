"""Fig. 3's axis spans the data, not the histogram's fixed 1e-3..1e4 bins."""
from __future__ import annotations

import numpy as np

from sge_viz.dissect.report import length_histogram_figure


def test_fig3_axis_fits_the_filled_bins():
    edges = np.logspace(-3, 4, 141)
    before, after = np.zeros(140), np.zeros(140)
    before[60:75] = 5  # lengths about 1 to 5.6
    after[50:70] = 3  # about 0.3 to 3.2
    fig = length_histogram_figure("layer", {"length_histogram": {"edges": edges.tolist(), "before": before.tolist(),
                                                                 "after": after.tolist()}})
    lo, hi = fig.axes[0].get_xlim()
    assert edges[50] / 1.3 <= lo <= edges[50] and edges[75] <= hi <= edges[75] * 1.3
