"""What the page says about its pictures: scales with numbers, true cells, vector lengths, the layer mean,
the model's domain and the out-of-domain note."""
from __future__ import annotations

import numpy as np
import pytest
from test_app_rerender import PHOTO, SCENE

from sge_viz import viz as render
from sge_viz.app import views
from sge_viz.app.catalogue import ModelService
from sge_viz.app.layout import build_ui
from sge_viz.app.settings import ViewSettings
from sge_viz.app.views import CORNER_BUTTONS, Cells, Contrast, Scale, view_image
from sge_viz.metrics import gates as stats
from sge_viz.viz.verdict import mark


@pytest.fixture(scope="module")
def page():
    service = ModelService(device="cpu")
    demo = build_ui(service)
    scene = service.run_analysis(service.default, SCENE, SCENE.name)
    photo = service.run_analysis(service.default, PHOTO, PHOTO.name)
    return demo.handlers, service, scene, photo


def saturation(picture: np.ndarray) -> np.ndarray:
    """Per pixel max(R, G, B) - min(R, G, B), 0..255: 0 for white and greys."""
    p = picture.astype(int)
    return p.max(axis=2) - p.min(axis=2)


def flat_and_selective(analysis) -> tuple[str, int, int]:
    """(layer, flattest group, most varying group) over the whole analysis, by spread (std)."""
    best = None
    for lg in analysis.layers:
        std = stats.group_stats(lg.gate).std
        lo, hi = int(np.argmin(std)), int(np.argmax(std))
        if best is None or std[hi] - std[lo] > best[0]:
            best = (std[hi] - std[lo], lg.name, lo, hi)
    return best[1], best[2], best[3]


def test_absolute_scale_keeps_a_flat_gate_pale_and_says_its_range(page):
    _, _, scene, _ = page
    layer, flat, selective = flat_and_selective(scene)
    std = stats.group_stats(scene.layer(layer).gate).std
    assert std[selective] > 3 * std[flat]
    absolute = {g: views.render_focus(scene, layer, g, "inferno", 0.5, contrast=Contrast.ABSOLUTE) for g in
                (flat, selective)}
    relative = {g: views.render_focus(scene, layer, g, "inferno", 0.5, contrast=Contrast.RELATIVE) for g in
                (flat, selective)}
    # Absolute: the flat group is clearly paler than the selective one (mean saturation of the map).
    flat_abs, sel_abs = (float(saturation(absolute[g].diverging).mean()) for g in (flat, selective))
    assert sel_abs > 2 * flat_abs, (flat_abs, sel_abs)
    # Relative: every group is stretched to its own extremes, so the flat one looks as vivid as any.
    flat_rel = float(saturation(relative[flat].diverging).mean())
    assert flat_rel > 4 * flat_abs, (flat_rel, flat_abs)
    # The pixels are the renderer's: gate minus the group's mean on -0.25..+0.25.
    gate = scene.layer(layer).gate[flat]
    want = render.diverging(view_image(scene), gate, limit=views.DIVERGING_RANGE)
    outline = views.view_mask(scene)
    np.testing.assert_array_equal(absolute[flat].diverging, mark(render.draw_outline(want, outline), scene.ood, reserve=CORNER_BUTTONS))
    # The legend prints the range: the absolute one is the same for both groups, the relative one is not.
    np.testing.assert_array_equal(absolute[flat].diverging_legend, absolute[selective].diverging_legend)
    assert not np.array_equal(relative[flat].diverging_legend, relative[selective].diverging_legend)
    assert render.diverging_limit(gate) < views.DIVERGING_RANGE  # a flat gate's own range is narrower


def test_true_cells_show_one_block_per_gate_value(page):
    _, _, scene, _ = page
    lg = scene.layers[-1]  # 8x8 gate maps on a 320 px view: 40 px blocks
    side = view_image(scene).shape[0]
    grey = np.full((side, side, 3), 128, np.uint8)
    nearest = render.overlay(grey, lg.gate[0], "inferno", 1.0, smooth=False)
    block = side // lg.gate.shape[1]
    cells = nearest[block // 2::block, block // 2::block]
    np.testing.assert_array_equal(np.repeat(np.repeat(cells, block, axis=0), block, axis=1), nearest)
    smooth = render.overlay(grey, lg.gate[0], "inferno", 1.0)
    assert not np.array_equal(smooth, nearest)
    # The page's toggle reaches every picture of the group.
    a = views.render_focus(scene, lg.name, 0, "inferno", 0.5, cells=Cells.NEAREST)
    b = views.render_focus(scene, lg.name, 0, "inferno", 0.5, cells=Cells.SMOOTH)
    for key in ("overlay", "diverging", "activations"):
        assert not np.array_equal(getattr(a, key), getattr(b, key)), key


def test_before_after_shows_vector_lengths_on_one_scale(page):
    _, _, scene, _ = page
    lg = scene.layer("layer3.1.sge")
    g = 0
    picture = views.activation_picture(scene, lg, g)
    before, after = lg.before_length[g], lg.after_length[g]
    assert (before >= 0).all() and (after >= 0).all()
    # after = before x gate, position by position (SGE scales the whole group vector by its gate).
    np.testing.assert_allclose(after, before * lg.gate[g], rtol=1e-4, atol=1e-5)
    lo, hi = render.activation_range(before, after)
    pair = render.activation_pair(view_image(scene), before, after, vmin=lo, vmax=hi)
    np.testing.assert_array_equal(picture[:pair.shape[0], :pair.shape[1]], pair)
    assert picture.shape[0] > pair.shape[0] + 14  # the colour bar underneath
    # Where the gate is low the vector shrinks: the two halves differ visibly.
    side = view_image(scene).shape[0]
    assert np.abs(pair[:, :side].astype(int) - pair[:, side + render.GAP:].astype(int)).mean() > 2


def test_layer_mean_map_is_the_mean_over_groups(page):
    _, _, scene, _ = page
    layer = "layer3.1.sge"
    lg = scene.layer(layer)
    got = views.render_layer_mean(scene, layer, "viridis", 0.6, Scale.FULL)
    want = render.overlay(view_image(scene), lg.gate.mean(axis=0, dtype=np.float64).astype(np.float32), "viridis", 0.6)
    np.testing.assert_array_equal(got, mark(render.draw_outline(want, views.view_mask(scene)), scene.ood, reserve=CORNER_BUTTONS))


def test_page_states_the_domain_and_flags_a_photo(page):
    h, service, _, _ = page
    out = h.show_image({"path": str(PHOTO), "orig_name": PHOTO.name}, service.default, ViewSettings())
    # The cat photo on the default model: flagged (the card says it knows randomised scenes).
    assert "Out of domain" in out[h.c.ood] and "randomised Fashion-MNIST scenes" in out[h.c.domain]
    assert "Ankle boot" in out[h.c.domain] and "64x64" in out[h.c.domain]
    scene = h.show_image({"path": str(SCENE), "orig_name": SCENE.name}, service.default, ViewSettings())
    assert "Within the domain" in scene[h.c.ood]
    # The note sends the reader to the card where it is, and opens it when it matters (out of domain).
    assert f'the card "{views.CARD}" under the predictions' in out[h.c.ood]
    assert out[h.c.card].open is True and h.c.card not in scene
    assert f'"{views.CARD}" under the predictions' in " ".join(views.HOW_TO_READ.split())
    ood = scene[h.c.state].ood
    assert ood.value <= ood.threshold < out[h.c.state].ood.value


def test_definitions_are_on_the_page(page):
    for name in ("selectivity", "spread", "enhanced share", "mean gate", "mask AUC"):
        assert name in views.HOW_TO_READ and name in views.definitions_markdown()
    assert "std / mean" in views.HOW_TO_READ and "ROC-AUC" in views.HOW_TO_READ


def test_group_control_fits_the_model_before_any_image(page):
    h, service, _, _ = page
    assert service.groups(service.default) == 8
    slider = h.c.group
    assert slider.maximum == 7
    picked = h.show_image(None, service.default, ViewSettings())
    assert picked[h.c.group].maximum == 7 and "knows" in picked[h.c.domain]
