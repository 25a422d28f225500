"""Many users at once: the app answers each request with that request's own results, and does not leak memory.

The app runs as a subprocess (tests/hostile/app_server.py) with a tiny model, so
its resident memory is measured on its own.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import save_tiny
from hostile.corpus import encode, pattern
from PIL import Image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from hostile.app_server import running_app  # noqa: E402

CONCURRENT = 24
SOAK_WARMUP = 30
SOAK_REQUESTS = 300
MAX_GROWTH = 0.10

# A hang must fail the run, not stall it (pytest-timeout).
pytestmark = pytest.mark.timeout(900)


def _image(i: int) -> Image.Image:
    """Distinct pictures: each shifted, tinted and sized differently."""
    rgb = np.roll(pattern(64 + 4 * (i % 5), 64), 5 * i, axis=1).astype(np.int32)
    rgb = (rgb + np.array([37 * i, 11 * i, 71 * i])) % 256
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(CONCURRENT):
        path = folder / f"user_{i:02d}.png"
        path.write_bytes(encode(_image(i), "PNG"))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    checkpoint = save_tiny(tmp_path_factory.mktemp("model") / "tiny.safetensors", seed=5)
    with running_app(checkpoint, tmp_path_factory.mktemp("app"), env={"SGE_VIZ_CONCURRENCY": "4"}) as server:
        yield server


def _submit(client: Client, path: Path, model: str):
    return client.submit(handle_file(str(path)), model, "", -1, "inferno", 0.5, api_name="/analyze")


def _fingerprint(result) -> tuple:
    """Everything that identifies one answer: predictions, stats, and the pixels of every picture."""
    label, stats, *pictures, gates = result
    with np.load(gates) as npz:
        arrays = [npz[k] for k in sorted(npz.files)]
    return label, stats, [np.asarray(Image.open(p).convert("RGB")) for p in pictures] + arrays


def _same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1] == b[1] and all(np.array_equal(x, y) for x, y in zip(a[2], b[2]))


def test_concurrent_requests_each_get_their_own_result(app, images) -> None:
    client = Client(app.url, verbose=False)
    model = client.predict(api_name="/models")["default"]
    alone = [_fingerprint(_submit(client, p, model).result(timeout=60)) for p in images]
    # Distinct images give distinct answers, so a mix-up could not go unnoticed.
    assert len({repr(f[1]) for f in alone}) == len(images)

    clients = [Client(app.url, verbose=False) for _ in range(4)]  # several connections, like several users
    start = time.perf_counter()
    jobs = [_submit(clients[i % len(clients)], p, model) for i, p in enumerate(images)]
    together = [_fingerprint(job.result(timeout=120)) for job in jobs]
    seconds = time.perf_counter() - start

    mixed = [images[i].name for i, (a, b) in enumerate(zip(alone, together)) if not _same(a, b)]
    assert not mixed, f"answers that differ from the single-request result: {mixed}"
    assert app.alive()
    print(f"{len(jobs)} concurrent requests served in {seconds:.1f} s, all identical to single requests")


def test_soak_memory_stays_flat(app, images) -> None:
    # Outputs stay on the server (no download): the soak measures the server, and runs faster.
    client = Client(app.url, verbose=False, download_files=False)
    model = client.predict(api_name="/models")["default"]
    server = psutil.Process(app.process.pid)

    def rss() -> int:
        return server.memory_info().rss

    for i in range(SOAK_WARMUP):
        client.predict(handle_file(str(images[i % len(images)])), model, "", -1, "inferno", 0.5,
                       api_name="/analyze")
    before = rss()
    first = None
    for i in range(SOAK_REQUESTS):
        result = client.predict(handle_file(str(images[i % len(images)])), model, "", -1, "inferno", 0.5,
                                api_name="/analyze")
        if i % len(images) == 0:  # the same image keeps getting the same answer
            first = first or result[:2]
            assert result[:2] == first
    after = rss()
    growth = (after - before) / before
    print(f"soak: {SOAK_REQUESTS} requests, RSS {before / 2**20:.0f} -> {after / 2**20:.0f} MiB ({growth:+.1%})")
    assert growth < MAX_GROWTH
    assert app.alive()


def test_a_full_queue_refuses_clearly_and_recovers(images, tmp_path) -> None:
    """With 1 worker and 2 queue places, a burst of 16 gets some answers, a clear refusal for the rest."""
    from concurrent.futures import ThreadPoolExecutor

    checkpoint = save_tiny(tmp_path / "tiny.safetensors", seed=5)
    env = {"SGE_VIZ_CONCURRENCY": "1", "SGE_VIZ_QUEUE_SIZE": "2"}
    with running_app(checkpoint, tmp_path / "app", env=env) as server:
        clients = [Client(server.url, verbose=False, download_files=False) for _ in range(16)]
        model = clients[0].predict(api_name="/models")["default"]

        def call(i: int) -> str:
            try:
                clients[i].predict(handle_file(str(images[i])), model, "", -1, "inferno", 0.5, api_name="/analyze")
                return "ok"
            except Exception as exc:  # the queue's refusal arrives as a client exception
                return str(exc)

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(16)))
        refused = [a for a in answers if a != "ok"]
        assert answers.count("ok") >= 3  # the running one and the two queued ones
        assert refused and all("queue is full" in a.lower() for a in refused), set(refused)
        assert clients[0].predict(handle_file(str(images[0])), model, "", -1, "inferno", 0.5,
                                  api_name="/analyze")[1]["layers"]
        assert server.alive()
