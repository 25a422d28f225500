"""A live app on localhost and a headless Debian chromium driving it (no network beyond 127.0.0.1)."""
from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: shared model and image builders

CHROMIUM = os.environ.get("SGE_VIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """(url, service, scene image path): the shipped demo model when present, else a small SGE-ResNet."""
    from sge_viz.checkpoints import DEMO_CHECKPOINT
    from sge_viz.service import ModelService, example_paths
    from sge_viz.ui import build_ui, launch
    from test_app_rerender import scene, small_checkpoint

    folder = tmp_path_factory.mktemp("e2e")
    if DEMO_CHECKPOINT.is_file():
        service = ModelService(device="cpu")
    else:
        service = ModelService(checkpoint=small_checkpoint(folder), device="cpu")
    examples = example_paths()
    image = examples[0] if examples else scene(folder / "scene.png")
    demo = build_ui(service)
    port = _free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True)
    try:
        yield f"http://127.0.0.1:{port}/", service, Path(image)
    finally:
        demo.close()


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
