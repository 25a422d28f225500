"""Pictures: colours equal matplotlib's, blends are exact, and the mosaic layout is invertible."""
from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from sge_viz import viz as render
from sge_viz.resize import resize_image


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def image(rng):
    return (rng.random((64, 64, 3)) * 255).astype(np.uint8)


def has_label(region: np.ndarray) -> bool:
    """Light text on a black box: both near-white and near-black pixels present."""
    return bool((region.min(axis=-1) > 200).any() and (region.max(axis=-1) < 20).any())


def mpl_colours(values, cmap, vmin=0.0, vmax=1.0):
    normed = (np.asarray(values, np.float64) - vmin) / (vmax - vmin)
    return np.round(matplotlib.colormaps[cmap](normed)[..., :3] * 255).astype(int)


@pytest.mark.parametrize("cmap, vmin, vmax", [("inferno", 0.0, 1.0), ("viridis", -2.0, 3.0), ("bwr", -0.5, 0.5)])
def test_colorize_matches_matplotlib(rng, cmap, vmin, vmax):
    values = rng.uniform(vmin - 0.2, vmax + 0.2, (40, 30)).astype(np.float32)
    values[0, :3] = (vmin, vmax, (vmin + vmax) / 2)
    got = render.colorize(values, cmap, vmin, vmax)
    assert got.shape == (40, 30, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - mpl_colours(values, cmap, vmin, vmax)).max() <= 1


def test_resize_maps_equals_pillow_bilinear(rng):
    for (h, w), (H, W) in [((7, 7), (224, 224)), ((56, 40), (24, 30)), ((5, 9), (5, 9))]:
        maps = rng.random((3, h, w)).astype(np.float32)
        got = render.resize_maps(maps, H, W)
        for m, g in zip(maps, got):
            expected = np.asarray(Image.fromarray(m, "F").resize((W, H), Image.BILINEAR))
            assert np.abs(g - expected).max() < 1e-5


def test_overlay_alpha_ends_and_middle(rng, image):
    gate = rng.random((8, 8)).astype(np.float32)
    assert np.array_equal(render.overlay(image, gate, alpha=0.0), image)
    colours = render.colorize(render.resize_maps(gate, 64, 64), "inferno")
    assert np.array_equal(render.overlay(image, gate, alpha=1.0), colours)
    blend = 0.3 * colours.astype(float) + 0.7 * image.astype(float)
    assert np.abs(render.overlay(image, gate, alpha=0.3).astype(float) - blend).max() <= 1.0


def test_diverging_red_above_mean_blue_below(rng):
    grey = np.full((32, 32, 3), 128, np.uint8)
    gate = np.full((4, 4), 0.5, np.float32)
    gate[0, 0], gate[3, 3] = 0.9, 0.1  # mean stays 0.5: symmetric deviations
    out = render.diverging(grey, gate, alpha=1.0).astype(int)
    assert tuple(out[0, 0]) == tuple(matplotlib_bwr_end(1.0))  # strongest enhancement: pure red end
    assert tuple(out[-1, -1]) == tuple(matplotlib_bwr_end(0.0))  # strongest suppression: blue end
    at_mean = out[16, 16]
    assert at_mean.min() > 240  # white at the mean
    random_gate = rng.random((6, 6)).astype(np.float32)
    out = render.diverging(grey, random_gate, alpha=1.0).astype(int)
    up = render.resize_maps(random_gate, 32, 32)
    above, below = up > random_gate.mean() + 0.05, up < random_gate.mean() - 0.05
    assert (out[above][:, 0] > out[above][:, 2]).all()
    assert (out[below][:, 2] > out[below][:, 0]).all()


def matplotlib_bwr_end(x):
    return np.round(np.asarray(matplotlib.colormaps["bwr"](x)[:3]) * 255).astype(int)


def test_diverging_flat_gate_is_white_blend(image):
    out = render.diverging(image, np.full((5, 5), 0.7, np.float32), alpha=1.0)
    assert (out >= 250).all()


def test_activation_pair_uses_one_shared_scale(rng):
    image = np.zeros((40, 40, 3), np.uint8)
    before = rng.random((10, 10)).astype(np.float32) + 1.0
    after = before * 0.25
    pair = render.activation_pair(image, before, after, alpha=1.0)
    assert pair.shape == (40, 2 * 40 + render.GAP, 3)
    lo, hi = float(after.min()), float(before.max())
    left, right = pair[20:, :40], pair[20:, 40 + render.GAP:]
    assert np.array_equal(left, render.colorize(render.resize_maps(before, 40, 40), "viridis", lo, hi)[20:])
    assert np.array_equal(right, render.colorize(render.resize_maps(after, 40, 40), "viridis", lo, hi)[20:])
    # captions are drawn: white text pixels in the top-left corner of each panel
    for corner in (pair[:12, :40], pair[:12, 40 + render.GAP:]):
        assert has_label(corner)


@pytest.mark.parametrize("groups, columns, expected", [(64, None, (8, 8)), (16, None, (4, 4)), (10, None, (3, 4)),
                                                       (10, 5, (2, 5)), (1, None, (1, 1)), (3, 10, (1, 3))])
def test_mosaic_grid(groups, columns, expected):
    assert render.mosaic_grid(groups, columns) == expected


@pytest.mark.parametrize("groups, columns, use_order", [(16, None, False), (10, 4, True), (64, None, True)])
def test_group_at_inverts_the_mosaic(rng, image, groups, columns, use_order):
    gates = rng.random((groups, 6, 6)).astype(np.float32)
    order = list(rng.permutation(groups)) if use_order else None
    tile = 20
    picture = render.mosaic(image, gates, order=order, tile=tile, columns=columns, labels=False)
    rows, cols = render.mosaic_grid(groups, columns)
    step = tile + render.GAP
    assert picture.shape == (rows * step - render.GAP, cols * step - render.GAP, 3)
    small_image = resize_image(image, tile, tile)
    seen = set()
    for r in range(rows):
        for c in range(cols):
            g = render.group_at(c * step + tile // 2, r * step + tile // 2, groups, tile, columns, order)
            if r * cols + c >= groups:
                assert g is None
                continue
            seen.add(g)
            # the tile there shows that group's gate
            expected = render.overlay(small_image, gates[g], alpha=0.5)
            cell = picture[r * step:r * step + tile, c * step:c * step + tile].astype(int)
            assert np.abs(cell - expected).max() <= 1
            assert render.group_at(c * step + tile + 1, r * step + 1, groups, tile, columns, order) is None  # gap
    assert seen == set(range(groups))
    assert render.group_at(-1, 5, groups, tile, columns, order) is None
    assert render.group_at(cols * step + 5, 5, groups, tile, columns, order) is None


def test_mosaic_labels_and_highlight(rng, image):
    gates = rng.random((16, 4, 4)).astype(np.float32) * 0.3  # dark tiles: labels stand out
    plain = render.mosaic(image * 0, gates, tile=48, labels=False)
    labelled = render.mosaic(image * 0, gates, tile=48, labels=True, highlight=5)
    differ = np.any(plain != labelled, axis=-1)
    step = 48 + render.GAP
    for g in range(16):
        r, c = divmod(g, 4)
        corner = labelled[r * step:r * step + 14, c * step:c * step + 24]
        assert has_label(corner)
        # outside the label box (and the highlight frame) nothing changed
        if g != 5:
            assert not differ[r * step + 20:r * step + 48, c * step:c * step + 48].any()
    r, c = divmod(5, 4)
    frame = labelled[r * step + 47, c * step:c * step + 48]
    assert (frame == render.HIGHLIGHT).all()


def test_mosaic_rejects_bad_order(image):
    with pytest.raises(ValueError):
        render.mosaic(image, np.zeros((4, 3, 3), np.float32), order=[0, 4])


def test_draw_outline_marks_the_boundary_only(image):
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    out = render.draw_outline(image, mask, colour=(0, 255, 0))
    ring = mask.copy()
    ring[11:29, 21:49] = False
    assert (out[ring] == (0, 255, 0)).all()
    assert np.array_equal(out[~ring], image[~ring])
    assert np.array_equal(image, image.copy())  # input untouched (copy returned)


def test_colorbar_runs_from_vmin_to_vmax():
    strip = render.colorbar("inferno", width=100, height=10, labels=False)
    table = render.colour_table("inferno")
    assert strip.shape == (10, 100, 3)
    assert (strip[:, 0] == table[0]).all() and (strip[:, -1] == table[255]).all()
    assert np.array_equal(strip[0], strip[-1])
    labelled = render.colorbar("inferno", width=100, height=10, vmin=-1, vmax=1)
    assert labelled.shape[0] > 10 and labelled.shape[1] == 100
    assert np.array_equal(labelled[:10], render.colorbar("inferno", 100, 10, -1, 1, labels=False))


def test_caption_and_png_round_trip(image):
    captioned = render.caption(image, "layer4.2.sge g7")
    assert captioned.shape[1] == 64 and captioned.shape[0] > 64
    assert np.array_equal(captioned[-64:], image)
    data = render.to_png_bytes(captioned)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), captioned)


def test_the_focused_tiles_label_is_whole_inside_its_frame(rng, image):
    """The frame of the focused tile is drawn first and its label inside it: "g1" stays "g1", not "1"."""
    from sge_viz.viz.text import text_sprite

    gates = rng.random((8, 4, 4)).astype(np.float32) * 0.3
    tile, width = 96, max(2, 96 // 32)
    picture = render.mosaic(image * 0, gates, tile=tile, labels=True, highlight=1)
    size = max(8, min(14, tile // 7))
    sprite = text_sprite("g1", size, (255, 255, 255), (0, 0, 0))
    x = tile + render.GAP + width  # the second tile, inside its frame
    np.testing.assert_array_equal(picture[width:width + sprite.shape[0], x:x + sprite.shape[1]], sprite)
    assert (picture[0, tile + render.GAP:tile + render.GAP + tile] == render.HIGHLIGHT).all()  # the frame's top


@pytest.mark.parametrize("colour", [(255, 255, 255), (200, 30, 7), (0, 0, 0)])
def test_filled_is_every_pixel_the_colour(colour):
    from sge_viz.viz.colour import filled

    out = filled(5, 7, colour)
    expected = np.empty((5, 7, 3), np.uint8)
    expected[:] = colour  # the slow assignment it replaces
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("shape, factor", [((64, 64), 5), ((48, 96), 7), ((100, 40), 8), ((320, 500), 1)])
def test_enlarged_by_the_smallest_whole_factor_keeping_the_aspect(rng, shape, factor):
    """The one enlarger of the page, the files and the class evidence: the shorter side reaches 320 px, both
    sides by the same whole factor (a non-square input keeps its aspect), Lanczos as Pillow draws it."""
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = render.enlarged(image)
    assert out.shape == (shape[0] * factor, shape[1] * factor, 3) and min(out.shape[:2]) >= render.MIN_SIDE
    if factor == 1:
        assert out is image
    else:
        want = Image.fromarray(image).resize((shape[1] * factor, shape[0] * factor), Image.LANCZOS)
        np.testing.assert_array_equal(out, np.asarray(want))
