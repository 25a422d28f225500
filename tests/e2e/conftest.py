"""A live app on localhost and a headless Debian chromium driving it (no network beyond 127.0.0.1)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import served_app

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = os.environ.get("SGE_VIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture(scope="module")
def live_app():
    """(url, service, example scene path): the app on the shipped default model, on a free localhost port,
    with one of its randomised example scenes (an ankle boot on a photo background)."""
    from sge_viz.app.catalogue import ModelService
    from sge_viz.resources import examples_dir

    service = ModelService(device="cpu")
    with served_app(service) as url:
        yield url, service, examples_dir() / "scene_wild_05.png"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no chromium at {CHROMIUM}: install Debian's chromium package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                              headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
