"""Every caption and verdict strip fits the picture it is drawn on: each text sprite is measured (the font's
own metrics, as drawn) against the strip it is pasted into, for the pictures the app, the CLI and the report
draw, at narrow and wide sizes. Wrapped or shortened by design, never clipped."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import DEMO_LIKE_CONFIG, make_tiny_model, structured_image

from sge_viz import viz
from sge_viz.domain import NO_SIGNAL, verdict, verdict_text
from sge_viz.viz import text as text_module
from sge_viz.viz import verdict as verdict_module
from sge_viz.viz.text import MARGIN, caption, text_width, wrap
from sge_viz.viz.verdict import HEIGHT, mark

LONG = ("layer3.1.sge: groups by contribution, largest first; frame: red = for the class, blue = against; "
        "supercalifragilisticexpialidocious_file_name_without_spaces.png")
VERDICTS = [None, verdict(7.3123, 4.5123, "d"), verdict(1.25, 4.51, "d")]


@pytest.fixture
def pasted(monkeypatch):
    """Every (strip width, x, sprite width) pasted by captions and verdict strips while the test runs."""
    calls = []
    real = text_module.paste

    def recording(target, sprite, x, y):
        calls.append((target.shape[1], x, sprite.shape[1]))
        return real(target, sprite, x, y)

    monkeypatch.setattr(text_module, "paste", recording)
    monkeypatch.setattr(verdict_module, "paste", recording)
    return calls


def assert_all_fit(calls):
    assert calls
    for width, x, sprite in calls:
        assert x + sprite <= width, f"a text of {sprite} px at x={x} is clipped by a {width} px picture"


@pytest.mark.parametrize("width", [40, 64, 97, 160, 320, 782])
def test_a_caption_wraps_to_its_picture_and_keeps_every_word(pasted, width):
    out = caption(np.zeros((10, width, 3), np.uint8), LONG, size=11)
    assert out.shape[1] == width
    assert_all_fit(pasted)
    lines = wrap(LONG, 11, width - 2 * MARGIN)
    assert "".join(lines).replace(" ", "") == LONG.replace(" ", "")  # nothing lost, only broken
    assert all(text_width(line, 11) <= width - 2 * MARGIN or len(line) == 1 for line in lines)
    assert out.shape[0] == 10 + len(lines) * 15 + 4  # one row of text per line


@pytest.mark.parametrize("width", [40, 72, 130, 200, 420])
@pytest.mark.parametrize("ood", VERDICTS)
def test_the_verdict_strip_fits_any_width_and_leaves_the_corner_free(pasted, width, ood):
    out = mark(np.zeros((10, width, 3), np.uint8), ood, reserve=48)
    assert out.shape == (10 + HEIGHT, width, 3)
    (strip, x, sprite), = pasted
    forms = verdict_module.verdict_forms(ood)
    fitting = [f for f in forms if text_width(f, verdict_module.SIZE) <= width - 8 - 48]
    if fitting:  # the longest form that fits is drawn whole, clear of the reserved corner
        assert x + sprite <= width - 4 - 48 and sprite == text_width(fitting[0], verdict_module.SIZE)
    else:  # nothing fits: the shortest form, the picture still drawn
        assert sprite == text_width(forms[-1], verdict_module.SIZE)
    if width >= 420:
        assert fitting[0] == (NO_SIGNAL if ood is None else verdict_text(ood, short=True))


def test_class_evidence_pictures_fit_their_texts(pasted):
    import torch

    from sge_viz.explain import explain
    from sge_viz.explain.pictures import cam_picture, gate_picture, signed_mosaic
    from sge_viz.models.factory import LoadedModel

    model, config = make_tiny_model(seed=1, config=DEMO_LIKE_CONFIG)
    loaded = LoadedModel(model.eval(), config, "tiny", "test", torch.device("cpu"))
    ev = explain(loaded, structured_image(seed=3), ablation=False)
    layer = ev.layers[-1]
    for tile in (48, 96):
        signed_mosaic(ev, layer, tile=tile)
    cam_picture(ev)
    gate_picture(ev, layer, 0)
    assert_all_fit(pasted)


def test_mosaic_files_and_report_patches_fit_their_texts(pasted, tmp_path):
    import torch

    from sge_viz.capture.analysis import analyze
    from sge_viz.io.export import write_analysis
    from sge_viz.models.factory import LoadedModel

    model, config = make_tiny_model(seed=2, config=DEMO_LIKE_CONFIG)
    loaded = LoadedModel(model.eval(), config, "tiny", "test", torch.device("cpu"))
    analysis = analyze(loaded, structured_image(seed=4))
    write_analysis(analysis, tmp_path / "out")
    viz.caption(np.zeros((64, 64, 3), np.uint8), "top 3: img_0001.png (0.93), red frame = out of domain", size=10)
    assert_all_fit(pasted)
