"""Fig. 3's axis spans the data, not the histogram's fixed bins, and its labels are readable over any span."""
from __future__ import annotations

import numpy as np
import pytest

from sge_viz.dissect.report import length_histogram_figure

EDGES = np.logspace(-5, 4, 181)  # 20 bins a decade, 1e-5 .. 1e4


def _figure(before_bins: slice, after_bins: slice):
    before, after = np.zeros(len(EDGES) - 1), np.zeros(len(EDGES) - 1)
    before[before_bins] = 5
    after[after_bins] = 3
    return length_histogram_figure("layer", {"length_histogram": {"edges": EDGES.tolist(), "before": before.tolist(),
                                                                  "after": after.tolist()}})


def test_fig3_axis_fits_the_filled_bins():
    fig = _figure(slice(100, 115), slice(90, 110))  # lengths about 1 to 5.6 and 0.3 to 3.2
    lo, hi = fig.axes[0].get_xlim()
    assert EDGES[90] / 1.3 <= lo <= EDGES[90] and EDGES[115] <= hi <= EDGES[115] * 1.3


@pytest.mark.parametrize("before_bins, after_bins", [
    (slice(100, 115), slice(90, 110)),  # under one decade
    (slice(60, 125), slice(50, 120)),  # 1e-2.5 .. 1e1.25: about 3.75 decades
    (slice(20, 126), slice(22, 120)),  # 1e-4 .. ~20: more than five decades
    (slice(0, 180), slice(0, 180)),  # the whole 1e-5 .. 1e4: nine decades
])
def test_fig3_tick_labels_never_overlap_and_stay_few(before_bins, after_bins):
    fig = _figure(before_bins, after_bins)
    ax = fig.axes[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # as the report draws it
    canvas.draw()
    renderer = canvas.get_renderer()
    lo, hi = ax.get_xlim()
    labels = [t for t in ax.get_xticklabels(which="both")
              if t.get_visible() and t.get_text() and lo <= t.get_position()[0] <= hi]
    assert 2 <= len(labels) <= 10, [t.get_text() for t in labels]
    assert all(t.get_text() in {t.get_text() for t in ax.get_xticklabels(which="major")} for t in labels)
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, "tick labels overprint"
    width = fig.bbox.width
    assert all(0 <= b.x0 and b.x1 <= width for b in boxes)  # none cut off at the picture's edges
