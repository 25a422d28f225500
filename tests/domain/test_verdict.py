"""``Verdict``: the typed out-of-domain verdict, its JSON form (what stats.json, evidence.json, predict's and
dissect's files write) and its words."""
from __future__ import annotations

import json

import pytest

from sge_viz.dissect.summary import Partial
from sge_viz.domain import NO_SIGNAL, Verdict, verdict, verdict_json, verdict_text


def test_out_of_domain_means_above_the_threshold():
    assert verdict(2.5, 2.0, "d").out_of_domain is True
    assert verdict(2.0, 2.0, "d").out_of_domain is False  # at the threshold: inside
    assert verdict(-1.0, 2.0, "d").out_of_domain is False


def test_json_form_is_the_files_form_and_reads_back():
    v = verdict(7.3123, 4.5, "mahalanobis")
    doc = json.loads(json.dumps(verdict_json(v)))
    assert doc == {"score": "mahalanobis", "value": 7.3123, "threshold": 4.5, "out_of_domain": True}
    assert Verdict.from_json(doc) == v
    assert verdict_json(None) is None


def test_a_saved_partial_keeps_every_verdict(tmp_path):
    """dissect's saved state (resume, Ray) writes the verdicts as JSON and reads back the same Verdicts."""
    partial = Partial(4, images=2, verdicts={"a.png": verdict(1.0, 2.0, "d"), "b.png": verdict(3.0, 2.0, "d")})
    again = Partial.from_json(partial.to_json())
    assert again.verdicts == partial.verdicts
    assert all(isinstance(v, Verdict) for v in again.verdicts.values())


@pytest.mark.parametrize("v, short, want", [
    (None, True, NO_SIGNAL),
    (verdict(7.31, 2.3, "d"), True, "OUT OF DOMAIN (score 7.31 > threshold 2.3)"),
    (verdict(7.31, 2.3, "d"), False, "OUT OF DOMAIN (score 7.31 > threshold 2.3): its predictions and gates are "
                                     "not evidence about this image"),
    (verdict(1.25, 4.51, "d"), False, "in domain (score 1.25 <= threshold 4.51)"),
])
def test_words(v, short, want):
    assert verdict_text(v, short=short) == want
