"""Hostile image sets: zip bombs, escaping names, nested archives, symlink loops, empty folders, bad masks,
10,000 tiny files."""
from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import structured_image
from dissect_helpers import tiny_loaded
from PIL import Image

from sge_viz.dissect.engine import run_local
from sge_viz.errors import SGEVizError
from sge_viz.io.inputs import collect, open_image_of, open_mask_of
from sge_viz.io.limits import Limits


def _png(seed: int = 0, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    structured_image(*size, seed=seed).save(buffer, format="PNG")
    return buffer.getvalue()


def test_hostile_zip_members_are_skipped_with_their_reason(tmp_path):
    archive = tmp_path / "hostile.zip"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.png", _png())
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.png", _png(1))
        zf.writestr("../escape.png", _png(2))
        zf.writestr("/absolute.png", _png(3))
        zf.writestr("dir/../../up.png", _png(4))
        zf.writestr("nested.zip", inner.getvalue())
        zf.writestr("bomb.png", b"\0" * (20 * 2**20))  # ~1000:1
        zf.writestr("notes.txt", "not an image")
    found = collect([archive])
    assert [i.name for i in found.items] == ["good.png"]
    reasons = {s["path"].split(":", 1)[1]: s["reason"] for s in found.skipped}
    assert set(reasons) == {"../escape.png", "/absolute.png", "dir/../../up.png", "nested.zip", "bomb.png"}
    assert "escape" in reasons["../escape.png"] and "escape" in reasons["/absolute.png"]
    assert "archive inside an archive" in reasons["nested.zip"]
    assert "zip bomb" in reasons["bomb.png"]
    image = open_image_of(found.items[0])
    mask = open_mask_of(found.items[0], image.size)
    assert image.size == (40, 30) and mask is None


def test_archive_over_the_total_size_limit_is_refused(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(5):
            zf.writestr(f"{i}.png", _png(i))
    total = sum(i.file_size for i in zipfile.ZipFile(archive).infolist())
    with pytest.raises(SGEVizError, match="SGE_VIZ_MAX_ARCHIVE_MB"):
        collect([archive], Limits(max_archive_bytes=total - 1))
    assert len(collect([archive], Limits(max_archive_bytes=total)).items) == 5


def test_member_renamed_as_image_but_holding_an_archive_is_skipped_at_read(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.png", _png())
    archive = tmp_path / "sneaky.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", _png())
        zf.writestr("sneaky.png", inner.getvalue())
    loaded, _ = tiny_loaded(tmp_path)
    partial = run_local(loaded, collect([archive]).items, 2, batch_size=2)
    assert partial.images == 1
    assert [s["path"].endswith("sneaky.png") and "archive inside an archive" in s["reason"]
            for s in partial.skipped] == [True]


def test_folder_walk_symlink_loops_empty_folders_and_bad_masks(tmp_path):
    root = tmp_path / "set"
    (root / "deep" / "er").mkdir(parents=True)
    structured_image(50, 40, seed=1).save(root / "a.png")
    structured_image(50, 40, seed=2).save(root / "deep" / "er" / "b.jpg")
    structured_image(50, 40, seed=3).save(root / "c.png")
    Image.new("L", (10, 10), 255).save(root / "c_mask.png")  # wrong size: c is kept, its mask dropped with why
    (root / "d.png").write_bytes(b"not a png at all")
    os.symlink(root, root / "deep" / "loop")  # a folder loop: never followed
    os.symlink(root / "x.png", root / "y.png")
    os.symlink(root / "y.png", root / "x.png")  # a file loop
    (root / "inner.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    found = collect([root])
    assert [i.name for i in found.items] == ["a.png", "c.png", "d.png", "deep/er/b.jpg"]
    reasons = " | ".join(s["reason"] for s in found.skipped)
    assert "not followed" in reasons and "looping" in reasons and "archive inside a folder" in reasons
    loaded, _ = tiny_loaded(tmp_path)
    partial = run_local(loaded, found.items, 2, batch_size=3)
    assert partial.images == 3  # a, c (without its mask) and b; d is not an image
    skipped = {os.path.basename(s["path"]): s["reason"] for s in partial.skipped}
    assert set(skipped) == {"c_mask.png", "d.png"}
    assert "mask skipped, so no mask AUC" in skipped["c_mask.png"]
    assert "10x10 but its image is 50x40" in skipped["c_mask.png"]

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images")
    with pytest.raises(SGEVizError, match="holds no images"):
        collect([empty])
    with pytest.raises(SGEVizError, match="does not exist"):
        collect([tmp_path / "missing"])


@pytest.mark.slow
def test_ten_thousand_tiny_files_keep_memory_flat(tmp_path):
    """10,000 tiny images run through; the summary's size does not grow with the number of images."""
    root = tmp_path / "many"
    root.mkdir()
    data = _png(0, size=(8, 8))
    for i in range(10_000):
        (root / f"{i:05d}.png").write_bytes(data)
    tracemalloc.start()
    found = collect([root])
    listing_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(found.items) == 10_000
    assert listing_peak < 16 * 2**20  # the list of names and paths, not the images
    loaded, _ = tiny_loaded(tmp_path)
    small = run_local(loaded, found.items[:64], 3, batch_size=64)
    full = run_local(loaded, found.items, 3, batch_size=250, workers=2)
    assert full.images == 10_000 and not full.skipped
    assert len(full.to_json()) < 1.1 * len(small.to_json())
    layer = next(iter(full.layers.values()))
    assert int(layer.hist_before.sum()) == 10_000 * layer.groups * layer.height * layer.width
    assert np.isfinite(layer.gate_sum).all()
