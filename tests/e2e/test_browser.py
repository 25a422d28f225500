"""The page in a real browser: it opens on the Single image tab with the first example analysed (no click) and
fits two screens; upload, wait for the mosaic, change layer and group, see the views change; the absolute
colour scale keeps a flat gate pale; a photo on the demo model gets the out-of-domain note and the domain
card; the definitions are on the page. Components of a tab or sub-tab are used after clicking into it.

Screenshots land in tests/e2e/screenshots/ (not tracked); the README's pictures are copies of them.
"""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Error as PlaywrightError

from sge_viz.app.views import mosaic_tile
from sge_viz.capture.analysis import analyze
from sge_viz.io.examples import known_examples
from sge_viz.io.images import open_image
from sge_viz.metrics.gates import group_stats
from sge_viz.models.registry import DEMO_KWARGS
from sge_viz.resources import examples_dir
from sge_viz.viz import GAP, verdict
from sge_viz.viz.verdict import HEIGHT

pytestmark = pytest.mark.timeout(240)

FOCUS = ("#overlay", "#diverging", "#activations")
UPLOAD = "#input-image input[type=file]"
TWO_SCREENS = 1800  # px: the Single image tab at 1400x900, as opened


def open_tab(page, name: str) -> None:
    """Click the (sub-)tab called ``name`` and wait until it is the selected one."""
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.click()
    page.wait_for_function("(el) => el.getAttribute('aria-selected') === 'true'", arg=tab.element_handle())


def src(page, selector: str) -> str | None:
    img = page.locator(f"{selector} img")
    return img.get_attribute("src") if img.count() else None


def wait_for_new(page, selector: str, old: str | None, timeout_s: float = 60.0) -> str:
    """Wait until the picture in ``selector`` is a new file (the server re-rendered it) and has loaded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = src(page, selector)
        if now and now != old:
            page.wait_for_function("(el) => el.complete && el.naturalWidth > 0",
                                   arg=page.locator(f"{selector} img").element_handle())
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"{selector} did not change within {timeout_s} s")


def wait_loaded(page, selector: str) -> None:
    page.locator(f"{selector} img").scroll_into_view_if_needed()  # lazy pictures load when in view
    page.wait_for_function("(el) => el.complete && el.naturalWidth > 0",
                           arg=page.locator(f"{selector} img").element_handle())


def strip_colour(page, selector: str) -> str:
    """Which verdict strip tops the picture, read from its pixels: "out" (red), "in" (green) or "none"."""
    wait_loaded(page, selector)
    picture = pixels(page, selector).astype(int)
    scale = picture.shape[1] / page.locator(f"{selector} img").evaluate("(el) => el.naturalWidth")
    row = picture[int(HEIGHT * scale / 2), 1]  # the strip's left edge, before its text (corner buttons: right)
    marks = {"out": verdict.OUT_BG, "in": verdict.IN_BG, "none": verdict.NONE_BG}
    return min(marks, key=lambda k: np.abs(row - np.array(marks[k])).sum())


def wait_idle(page, selector: str) -> None:
    """Wait until no event is pending on ``selector``'s block (Gradio's status tracker, which greys the picture
    while an event runs, is hidden)."""
    page.wait_for_function("(sel) => [...document.querySelectorAll(sel + ' .wrap.default')]"
                           ".every((w) => w.classList.contains('hide'))", arg=selector, timeout=60000)


def pixels(page, selector: str) -> np.ndarray:
    """The picture in ``selector`` as shown on screen, once no event is pending on it."""
    wait_idle(page, selector)
    return np.asarray(Image.open(io.BytesIO(page.locator(f"{selector} img").screenshot())).convert("RGB"))


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or float(np.abs(a.astype(int) - b.astype(int)).mean()) > 0.5


def views(page) -> dict[str, tuple[str | None, np.ndarray]]:
    return {sel: (src(page, sel), pixels(page, sel)) for sel in FOCUS + ("#mosaic",)}


def group_value(page) -> int:
    return int(float(page.locator("#group input[type=number]").input_value()))


def saturation(picture: np.ndarray) -> float:
    """Mean per-pixel max(R, G, B) - min(R, G, B) (0 = white or grey), the green item outline left out."""
    p = picture.astype(int)
    outline = (p[..., 1] > p[..., 0] + 60) & (p[..., 1] > p[..., 2] + 60)
    return float((p.max(axis=2) - p.min(axis=2))[~outline].mean())


def choose_layer(page, name: str, old: dict) -> None:
    """Pick ``name`` in the layer dropdown and wait for the focused views to be redrawn."""
    page.locator("#layer input").click()
    page.get_by_role("option", name=name, exact=True).click()
    for sel in FOCUS:
        wait_for_new(page, sel, old[sel][0])


def choose_group(page, group: int) -> None:
    before = src(page, "#diverging")
    box = page.locator("#group input[type=number]")
    box.fill(str(group))
    box.press("Enter")
    wait_for_new(page, "#diverging", before)


def pin(page, slot: int) -> None:
    """Pin the focused view (in the Compare sub-tab) and wait for it in panel ``slot``."""
    open_tab(page, "Compare")
    page.locator("#pin").click()
    wait_for_new(page, f"#compare-{slot}", None)


def test_the_page_opens_analysed_and_fits_two_screens(live_app, browser, screenshots):
    """Three visitors at once: each page opens on the Single image tab with the first example analysed, without
    a click, in its own session; the tab is at most two screens tall at 1400x900."""
    url, service, _ = live_app
    first = known_examples(service.config(service.default))[0]
    contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(3)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.goto(url)
    for page in pages:
        wait_for_new(page, "#mosaic", None)  # the mosaic image element has a src, nobody clicked
        for sel in FOCUS + ("#layer-mean",):
            wait_for_new(page, sel, None)
        assert first.name in page.locator("#caption").inner_text()
        assert page.locator("#predictions").inner_text().strip(), "no predictions shown"
    page = pages[0]
    selected = page.get_by_role("tab", name="Single image", exact=True)
    assert selected.get_attribute("aria-selected") == "true"
    # One visitor's view is their own: another page's group change leaves this one's caption alone.
    caption = page.locator("#caption").inner_text()
    other = pages[1]
    group = 1 if group_value(other) != 1 else 2
    choose_group(other, group)
    assert f"group {group} of" in other.locator("#caption").inner_text()
    assert page.locator("#caption").inner_text() == caption
    for sel in ("#mosaic", "#mosaic-legend") + FOCUS + ("#layer-mean",):
        wait_loaded(page, sel)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(500)
    height = page.evaluate("() => document.documentElement.scrollHeight")
    assert height <= TWO_SCREENS, f"the Single image tab is {height} px tall at 1400x900"
    page.screenshot(path=str(screenshots / "first_screen_after.png"))
    (screenshots / "heights.txt").write_text(f"Single image tab at 1400x900, as opened: {height} px\n")
    for context in contexts:
        context.close()


def test_upload_explore_layer_and_group(live_app, browser, screenshots, tmp_path):
    url, service, image = live_app
    page = browser.new_page(viewport={"width": 1400, "height": 1450})
    page.goto(url)
    page.wait_for_selector(UPLOAD, state="attached")
    opened = {sel: wait_for_new(page, sel, None) for sel in FOCUS + ("#mosaic",)}  # the first example

    started = time.perf_counter()
    page.locator(UPLOAD).set_input_files(str(image))
    wait_for_new(page, "#mosaic", opened["#mosaic"])
    upload_to_mosaic = time.perf_counter() - started
    for sel in FOCUS:
        wait_for_new(page, sel, opened[sel])
    assert image.name in page.locator("#caption").inner_text()
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshots / "app_overview.png"))
    first = views(page)
    # It opens on the deepest SGE layer and says which and why; every gate picture carries the verdict.
    deepest = analyze(service.get(service.default), open_image(image)).layer_names[-1]
    assert page.locator("#layer input").input_value() == deepest
    assert f"opens on {deepest}, the deepest" in page.locator("#layer").inner_text()
    for sel in FOCUS + ("#mosaic", "#layer-mean"):
        assert strip_colour(page, sel) == "in", sel
    assert page.locator("#predictions").inner_text().strip(), "no predictions shown"
    assert f"group {group_value(page)} of" in page.locator("#caption").inner_text()
    pin(page, 1)

    # Another layer from the dropdown: every picture changes.
    layer_input = page.locator("#layer input")
    current = layer_input.input_value()
    layer_input.click()
    page.get_by_role("option").first.wait_for(timeout=10000)
    names = [n.replace("✓", "").strip() for n in page.get_by_role("option").all_inner_texts()]
    assert current in names and len(names) >= 2, names
    target = names[1] if current != names[1] else names[0]
    started = time.perf_counter()
    page.get_by_role("option", name=target, exact=True).click()
    wait_for_new(page, "#mosaic", first["#mosaic"][0])
    for sel in FOCUS:
        wait_for_new(page, sel, first[sel][0])
    layer_switch = time.perf_counter() - started
    assert layer_input.input_value() == target
    second = views(page)
    for sel in second:
        assert differs(first[sel][1], second[sel][1]), f"{sel} looks the same after the layer change"
    caption = page.locator("#caption").inner_text()
    assert target in caption and f"`{target}`" not in caption  # named, as rendered Markdown
    pin(page, 2)

    # Another group, typed into the slider's number box: the focused views change.
    group_box = page.locator("#group input[type=number]")
    new_group = 1 if group_value(page) != 1 else 2
    group_box.fill(str(new_group))
    group_box.press("Enter")
    for sel in FOCUS + ("#mosaic",):  # the mosaic's frame moves to the new group
        wait_for_new(page, sel, second[sel][0])
    third = views(page)
    for sel in FOCUS:
        assert differs(second[sel][1], third[sel][1]), f"{sel} looks the same after the group change"
    assert f"group {new_group} of" in page.locator("#caption").inner_text()
    pin(page, 3)

    # Clicking a mosaic tile focuses that group: the second tile of the first row.
    mosaic = page.locator("#mosaic img")
    box = mosaic.bounding_box()
    natural_width = mosaic.evaluate("(el) => el.naturalWidth")
    scale = box["width"] / natural_width
    tile = mosaic_tile(DEMO_KWARGS["groups"])  # the demo model's layers all have the same group count
    mosaic.click(position={"x": (tile + GAP + tile / 2) * scale, "y": (HEIGHT + tile / 2) * scale})  # under the verdict
    deadline = time.monotonic() + 30
    while group_value(page) == new_group and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    clicked = group_value(page)
    assert clicked != new_group, "clicking a tile did not change the focused group"
    wait_for_new(page, "#overlay", third["#overlay"][0])
    wait_for_new(page, "#mosaic", third["#mosaic"][0])
    assert f"group {clicked} of" in page.locator("#caption").inner_text()
    pin(page, 4)
    page.screenshot(path=str(screenshots / "focused_group.png"), full_page=True)

    # The compare row holds the four pinned views, captioned (image · layer · group).
    labels = [page.locator(f"#compare-{i}").inner_text() for i in range(1, 5)]
    assert any(target in label for label in labels) and any(f"group {clicked}" in label for label in labels), labels
    page.locator("#compare-1").scroll_into_view_if_needed()
    page.locator("#compare-1").locator("xpath=../..").screenshot(path=str(screenshots / "compare.png"))

    open_tab(page, "Statistics")
    page.wait_for_selector("#depth img", timeout=30000)
    page.wait_for_timeout(300)
    page.locator("#depth").locator("xpath=..").screenshot(path=str(screenshots / "statistics.png"))

    # A broken upload: its message appears in the page, and the app goes on serving.
    open_tab(page, "Compare")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    page.locator(UPLOAD).set_input_files(str(broken))
    page.locator(".toast-body", has_text="broken.png").first.wait_for(timeout=30000)
    again = tmp_path / f"again{image.suffix}"
    again.write_bytes(image.read_bytes())
    page.locator(UPLOAD).set_input_files(str(again))
    page.wait_for_function("() => document.querySelector('#caption').innerText.includes('again')", timeout=60000)

    # The absolute scale of the enhanced/suppressed map: a flat group renders near-white, a selective one
    # does not. Which groups are flat and selective is read from the library on the same image.
    analysis = analyze(service.get(service.default), open_image(again))
    spreads = {lg.name: group_stats(lg.gate).std for lg in analysis.layers}
    layer = max(spreads, key=lambda n: spreads[n].max() - spreads[n].min())
    flat, selective = int(np.argmin(spreads[layer])), int(np.argmax(spreads[layer]))
    assert spreads[layer][selective] > 3 * spreads[layer][flat]
    current = views(page)
    if page.locator("#layer input").input_value() != layer:
        choose_layer(page, layer, current)
    seen = {}
    for group in (flat, selective) if group_value(page) != flat else (selective, flat):
        if group_value(page) != group:
            choose_group(page, group)
        assert f"group {group} of" in page.locator("#caption").inner_text()
        seen[group] = saturation(pixels(page, "#diverging"))
        if group == flat:
            page.locator("#diverging").locator("xpath=../..").screenshot(path=str(screenshots / "flat_group.png"))
        else:
            page.locator("#diverging").locator("xpath=../..").screenshot(
                path=str(screenshots / "selective_group.png"))
    assert seen[flat] < 15 and seen[selective] > 2 * seen[flat], seen
    open_tab(page, "Scales and cells")
    assert "0.25" in page.locator("#contrast").inner_text()  # the fixed range is stated
    page.locator("#activations").scroll_into_view_if_needed()
    page.locator("#activations").screenshot(path=str(screenshots / "before_after.png"))

    # The definitions: the "How to read this" panel opens and names every number with its formula.
    page.locator("#how-to-read").get_by_text("How to read this").first.click()
    definitions = page.locator("#definitions")
    definitions.wait_for(state="visible", timeout=10000)
    text = definitions.inner_text()
    for term in ("selectivity", "spread", "enhanced share", "mean gate", "mask AUC", "std / mean", "ROC-AUC"):
        assert term in text, term
    definitions.screenshot(path=str(screenshots / "how_to_read.png"))
    page.locator("#how-to-read").get_by_text("How to read this").first.click()

    # A photo on the default model: the out-of-domain note and the domain card say what the model knows.
    photo = examples_dir() / "chelsea.jpg"
    old_mosaic = src(page, "#mosaic")
    page.locator(UPLOAD).set_input_files(str(photo))
    wait_for_new(page, "#mosaic", old_mosaic)
    page.wait_for_function("() => document.querySelector('#ood-note').innerText.includes('Out of domain')",
                           timeout=60000)
    for sel in FOCUS + ("#mosaic",):  # a mark on each picture, not only the note
        wait_loaded(page, sel)
        assert strip_colour(page, sel) == "out", sel
    card = page.locator("#domain-card").inner_text()
    assert "randomised Fashion-MNIST scenes" in card and "Ankle boot" in card and "64x64" in card
    # The broken upload's warning may still be up: close it (it may be closing on its own already), so the
    # picture shows this image's page only.
    for close in page.locator(".toast-close").all():
        try:
            close.click(timeout=2000)
        except PlaywrightError:  # detached or mid-animation: it is going anyway
            pass
    page.wait_for_function("() => !document.querySelector('.toast-body')", timeout=30000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshots / "photo_out_of_domain.png"))
    page.locator("#ood-note").locator("xpath=../..").screenshot(path=str(screenshots / "photo_domain_card.png"))

    # A group typed out of range: one warning naming the valid groups, no error badges, the views stay.
    shown = src(page, "#overlay")
    box = page.locator("#group input[type=number]")
    box.fill("99")
    box.press("Enter")
    page.locator(".toast-body", has_text="groups 0 to 7").first.wait_for(timeout=30000)
    assert src(page, "#overlay") == shown
    assert page.locator(".error").count() == 0 or not page.locator(".error").first.is_visible()

    (screenshots / "timings.txt").write_text(
        f"model: {service.default}\nupload to mosaic: {upload_to_mosaic:.2f} s\n"
        f"layer switch (all views redrawn): {layer_switch:.2f} s\n")
    print(f"\nupload to mosaic {upload_to_mosaic:.2f} s; layer switch {layer_switch:.2f} s ({service.default})")
    page.close()


def test_class_evidence_with_and_without_an_image_and_a_zip_in_the_image_set(live_app, browser, screenshots, tmp_path):
    """Class evidence opened on the example the page opens with: its Grad-CAM, and the faithfulness panel's
    verdicts. With the image removed, opened
    (and Explain pressed) again: one sentence, no error badge or toast.
    The Image set tab reads a .zip of images and masks like the files themselves; top-k goes to 32; the
    Fig. 3 and Fig. 4 titles are on the page, not hidden under panel labels."""
    import json
    import zipfile

    from conftest import structured_image

    from sge_viz.dissect.engine import run_local
    from sge_viz.dissect.summary import summary_dict
    from sge_viz.io.inputs import collect

    url, service, _ = live_app
    page = browser.new_page(viewport={"width": 1400, "height": 1150})
    page.goto(url)
    page.wait_for_selector(UPLOAD, state="attached")

    wait_for_new(page, "#mosaic", None)  # the first example, analysed on load
    open_tab(page, "Class evidence")
    wait_for_new(page, "#evidence-cam", None, timeout_s=120)
    assert "p = " in page.locator("#evidence-summary").inner_text()
    # The faithfulness panel: opened, measured, its verdicts in words for the focused group first.
    page.locator("#evidence-faith").get_by_text("Faithfulness: deletion and insertion").click()
    page.locator("#evidence-faith-run").click()
    page.wait_for_function("() => document.querySelector('#evidence-faith-words').innerText.includes('gap')",
                           timeout=120000)
    words = page.locator("#evidence-faith-words").inner_text()
    assert "group" in words.splitlines()[0] and "Grad-CAM" in words and "trapezoid" in words
    open_tab(page, "Single image")
    page.locator("#input-image button[aria-label='Remove Image']").click()
    page.wait_for_function("() => !document.querySelector('#input-image img')", timeout=30000)
    open_tab(page, "Class evidence")
    page.wait_for_function("() => document.querySelector('#evidence-summary').innerText.includes('No image yet')",
                           timeout=30000)
    page.wait_for_function("() => !document.querySelector('#evidence-cam img')", timeout=30000)  # no stale CAM
    page.locator("#evidence-run").click()
    page.wait_for_timeout(1500)
    assert "No image yet" in page.locator("#evidence-summary").inner_text()
    assert page.locator(".toast-body").count() == 0
    assert page.locator(".error").count() == 0 or not page.locator(".error").first.is_visible()
    page.screenshot(path=str(screenshots / "evidence_without_an_image.png"))

    # A zip of four pictures and two masks, and the same files as a folder for the library.
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(4):
        structured_image(80, 70, seed=20 + i).save(folder / f"p{i}.png")
    mask = np.pad(np.ones((30, 40), np.uint8) * 255, ((20, 20), (20, 20)))
    for i in (1, 3):
        Image.fromarray(mask).save(folder / f"p{i}_mask.png")
    archive = tmp_path / "pictures.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    want = summary_dict(run_local(service.get(service.default), collect([folder]).items, 6, batch_size=8), {})

    open_tab(page, "Image set")
    assert page.locator("#set-topk input[type=number]").get_attribute("max") == "32"
    page.locator("#set-files input[type=file]").set_input_files(str(archive))
    page.wait_for_timeout(1000)
    page.locator("#set-run").click()
    page.wait_for_selector("#set-fig3 img", state="attached", timeout=180000)
    wait_loaded(page, "#set-fig3")
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
    shown = "".join(page.locator("#set-summary").inner_text().split())
    assert f'"images":{want["images"]}' in shown and want["images"] == 4
    assert "/tmp" not in shown and "sge_viz_" not in shown  # no server path in what the visitor sees
    text = page.locator("#set-fig3").locator("xpath=../../..").inner_text()
    assert "Fig. 3 view" in text and "Fig. 4 view" in text
    page.locator("#set-fig3").locator("xpath=../../..").screenshot(path=str(screenshots / "image_set_zip.png"))
    # Every group's mask count and top images equal the folder's (the report zip holds summary.json).
    link = page.locator("#set-report a").first
    with page.expect_download() as download:
        link.click()
    with zipfile.ZipFile(download.value.path()) as zf:
        got = json.loads(zf.read("summary.json"))
    assert got["images"] == want["images"]
    for name, layer in want["layers"].items():
        for g, w in zip(got["layers"][name]["per_group"], layer["per_group"]):
            assert [t["image"] for t in g["top"]] == [t["image"] for t in w["top"]]
            assert g["mask_images"] == w["mask_images"] == 2
    page.close()
