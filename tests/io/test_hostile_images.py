"""Hostile and odd image files through the library, the CLI and the app's API.

Every file must give a valid analysis or the project's clear error (never a
crash, never a hang): each within 10 s, a robustness bound rather than a speed
benchmark. The three interfaces must agree on which files are which.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_LIKE_SIZE as TINY_SIZE
from conftest import save_tiny
from hostile.corpus import EITHER, ERROR, OK, Case, build_corpus, encode, exif_jpeg, pattern
from PIL import Image

from sge_viz import cli
from sge_viz.capture.analysis import Analysis, analyze
from sge_viz.errors import SGEVizError
from sge_viz.io.images import IMAGE_SUFFIXES, open_image
from sge_viz.io.limits import current_limits
from sge_viz.models.factory import LoadedModel, load_checkpoint

PER_FILE_SECONDS = 10.0
TINY_LAYERS = 6  # DEMO_KWARGS: three stages of two blocks, one SGE layer each

# A hang must fail the run, not stall it (pytest-timeout); per-file times are asserted below.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[Case, Path]]:
    return build_corpus(tmp_path_factory.mktemp("corpus"), current_limits().max_upload_bytes)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("model") / "tiny.safetensors", seed=3)


@pytest.fixture(scope="module")
def loaded(checkpoint: Path) -> LoadedModel:
    return load_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def library_outcomes(corpus, loaded) -> dict[str, tuple[str, object, float]]:
    """name -> ("ok", Analysis, seconds) or ("error", message, seconds); anything else raised propagates."""
    out = {}
    for case, path in corpus:
        start = time.perf_counter()
        try:
            result: tuple[str, object] = (OK, analyze(loaded, open_image(path)))
        except SGEVizError as exc:
            result = (ERROR, str(exc))
        out[case.name] = (*result, time.perf_counter() - start)
    return out


def check_analysis(a: Analysis) -> None:
    """What any valid analysis of the tiny model must look like."""
    assert a.image.shape == (TINY_SIZE, TINY_SIZE, 3) and a.image.dtype == np.uint8
    probs = [p.probability for p in a.predictions]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-5
    assert len(a.layers) == TINY_LAYERS
    for layer in a.layers:
        assert layer.gate.ndim == 3 and np.isfinite(layer.gate).all()
        assert (layer.gate >= 0).all() and (layer.gate <= 1).all()


def check_error_message(message: str) -> None:
    assert len(message) > 20 and "Traceback" not in message
    assert re.search(r"empty|not an image|truncated|corrupt|limit|too large|no pixels", message), message


def test_corpus_covers_every_class(corpus) -> None:
    kinds = {case.kind for case, _ in corpus}
    assert len(corpus) >= 40
    assert {"mode", "format", "animated", "exif", "size", "bomb", "truncated", "corrupt", "oversize", "empty",
            "not an image", "wrong extension"} <= kinds


def test_library_answers_every_file(corpus, library_outcomes) -> None:
    problems = []
    for case, _ in corpus:
        outcome, value, seconds = library_outcomes[case.name]
        if case.expect != EITHER and outcome != case.expect:
            problems.append(f"{case.name}: expected {case.expect}, got {outcome}: {str(value)[:100]}")
        if seconds >= PER_FILE_SECONDS:
            problems.append(f"{case.name}: took {seconds:.1f} s")
        if outcome == OK:
            check_analysis(value)
        else:
            check_error_message(value)
            assert case.name in value  # the message names the file
    assert not problems, "\n".join(problems)


def test_pixel_limit_refuses_before_decoding(corpus, monkeypatch) -> None:
    decoded = []
    original = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    for case, path in corpus:
        if case.kind == "bomb":
            with pytest.raises(SGEVizError):
                open_image(path)
    assert all(w * h <= current_limits().max_pixels for w, h in decoded), decoded


def test_limits_follow_the_environment(monkeypatch, tmp_path) -> None:
    small = encode(Image.fromarray(pattern(30, 30)), "PNG")  # 900 pixels
    large = encode(Image.fromarray(pattern(40, 30)), "PNG")  # 1200 pixels
    monkeypatch.setenv("SGE_VIZ_MAX_PIXELS", "1000")
    assert open_image(small).size == (30, 30)
    with pytest.raises(SGEVizError, match="SGE_VIZ_MAX_PIXELS"):
        open_image(large)
    monkeypatch.setenv("SGE_VIZ_MAX_UPLOAD_MB", str(len(small) / 2**20 * 0.99))
    with pytest.raises(SGEVizError, match="upload limit"):
        open_image(small)
    monkeypatch.setenv("SGE_VIZ_MAX_UPLOAD_MB", "lots")
    with pytest.raises(SGEVizError, match="SGE_VIZ_MAX_UPLOAD_MB"):
        open_image(small)


# --- pixels, not just "no crash" ---------------------------------------------

def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


@pytest.mark.parametrize("name", ["mode_L.png", "mode_LA.png", "mode_P.png", "mode_P_transparency.png",
                                  "mode_CMYK.jpg", "mode_CMYK.tif", "mode_I16.png", "mode_I.tif", "mode_F.tif",
                                  "mode_F_nan_inf.tif", "mode_YCbCr.jpg", "mode_LAB.tif"])
def test_every_mode_keeps_the_picture(corpus, name: str) -> None:
    path = dict((c.name, p) for c, p in corpus)[name]
    reference = _grey(Image.fromarray(pattern(40, 30)))
    got = _grey(open_image(path))
    assert got.shape == reference.shape
    assert np.corrcoef(got.ravel(), reference.ravel())[0, 1] > 0.95


def test_transparency_is_composited_over_white(corpus) -> None:
    paths = dict((c.name, p) for c, p in corpus)
    rgb = pattern(40, 30).astype(np.float64)
    alpha = (np.arange(40)[None, :].repeat(30, 0) * 6)[..., None] / 255.0
    expected = rgb * alpha + 255.0 * (1 - alpha)
    got = np.asarray(open_image(paths["mode_RGBA.png"]), dtype=np.float64)
    assert np.abs(got - expected).max() <= 1.0
    assert (np.asarray(open_image(paths["mode_RGBA_fully_clear.png"])) == 255).all()


@pytest.mark.parametrize("fmt,tolerance", [("PNG", 0.0), ("JPEG", 6.0)])
@pytest.mark.parametrize("orientation,rotate", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
                                                (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_gives_the_upright_view(fmt: str, tolerance: float, orientation: int, rotate) -> None:
    stored = exif_jpeg(orientation, fmt=fmt)
    raw = Image.open(__import__("io").BytesIO(stored)).convert("RGB")  # the pixels as stored, unrotated
    upright = np.asarray(open_image(stored), dtype=np.float64)
    expected = np.asarray(raw.transpose(rotate), dtype=np.float64)
    assert upright.shape == expected.shape
    assert np.abs(upright - expected).mean() <= tolerance
    if orientation != 3:  # and it is not the unrotated (transposed) picture
        assert upright.shape != np.asarray(raw).shape


def test_first_frame_of_animations(corpus) -> None:
    paths = dict((c.name, p) for c, p in corpus)
    first = pattern(40, 40).astype(np.float64)
    for name, tolerance in (("animated.png", 0.0), ("animated.webp", 12.0), ("animated.gif", 40.0)):
        got = np.asarray(open_image(paths[name]), dtype=np.float64)
        second = np.roll(first, 7, axis=1)
        assert np.abs(got - first).mean() <= tolerance, name
        assert np.abs(got - first).mean() < np.abs(got - second).mean(), name


# --- the CLI ---------------------------------------------------------------------

def test_cli_answers_every_file(corpus, checkpoint, library_outcomes, tmp_path, capsys) -> None:
    problems = []
    for case, path in corpus:
        out = tmp_path / "out" / case.name
        start = time.perf_counter()
        code = cli.main(["analyze", str(path), "--checkpoint", str(checkpoint), "--out", str(out), "--json",
                         "--device", "cpu", "--workers", "0"])
        seconds = time.perf_counter() - start
        captured = capsys.readouterr()
        expected = library_outcomes[case.name][0]
        if seconds >= PER_FILE_SECONDS:
            problems.append(f"{case.name}: took {seconds:.1f} s")
        doc = json.loads(captured.out)
        if expected == OK:
            if code != 0 or len(doc["results"]) != 1:
                problems.append(f"{case.name}: library analysed it, CLI exit {code}: {captured.err.strip()[:200]}")
                continue
            stats = json.loads((Path(doc["results"][0]["folder"]) / "stats.json").read_text())
            analysis = library_outcomes[case.name][1]
            assert list(stats["layers"]) == analysis.layer_names
            assert [p["index"] for p in stats["predictions"]] == [p.index for p in analysis.predictions]
        else:
            lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
            if code != 1 or doc["results"] or not lines or "Traceback" in captured.err:
                problems.append(f"{case.name}: library refused it, CLI exit {code}, stderr {captured.err[:200]!r}")
                continue
            check_error_message(lines[0])
            assert not any(out.iterdir()) if out.exists() else True  # nothing half-written
    assert not problems, "\n".join(problems)


def test_cli_whole_corpus_in_one_run(corpus, checkpoint, library_outcomes, tmp_path, capsys) -> None:
    folder = next(iter(corpus))[1].parent
    listed = [c.name for c, p in corpus if p.suffix.lower() in IMAGE_SUFFIXES]
    code = cli.main(["analyze", str(folder), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "all"),
                     "--json", "--device", "cpu", "--batch-size", "8", "--workers", "0"])
    doc = json.loads(capsys.readouterr().out)
    done = {Path(r["image"]).name for r in doc["results"]}
    failed = {Path(f["image"]).name for f in doc["failed"]}
    assert code == 1
    assert done == {n for n in listed if library_outcomes[n][0] == OK}
    assert failed == {n for n in listed if library_outcomes[n][0] == ERROR}


# --- the app's API -------------------------------------------------------------------

def _strip_names(message: str) -> str:
    return re.sub(r"Image '[^']*'", "Image X", message)


@pytest.fixture(scope="module")
def app(checkpoint, tmp_path_factory):
    pytest.importorskip("gradio_client")
    from hostile.app_server import running_app

    with running_app(checkpoint, tmp_path_factory.mktemp("app")) as server:
        yield server


def _call(client, path: Path, model: str):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), model, "", -1, "inferno", 0.5, api_name="/analyze")


def test_app_api_answers_every_file_and_keeps_serving(app, corpus, library_outcomes) -> None:
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    model = client.predict(api_name="/models")["default"]
    good = dict((c.name, p) for c, p in corpus)["mode_RGB.png"]
    baseline = _call(client, good, model)
    problems = []
    for case, path in corpus:
        expected, value, _ = library_outcomes[case.name]
        start = time.perf_counter()
        try:
            result, message = _call(client, path, model), None
        except Exception as exc:  # gradio_client reports server-side errors as exceptions
            result, message = None, str(exc)
        seconds = time.perf_counter() - start
        if seconds >= PER_FILE_SECONDS:
            problems.append(f"{case.name}: took {seconds:.1f} s")
        if expected == OK:
            if result is None:
                problems.append(f"{case.name}: library analysed it, app said {message[:200]!r}")
                continue
            stats = result[1]
            assert list(stats["layers"]) == value.layer_names
            assert [p["index"] for p in stats["predictions"]] == [p.index for p in value.predictions]
        elif result is not None:
            problems.append(f"{case.name}: library refused it, app analysed it")
        elif case.kind == "oversize":
            assert re.search(r"too large|size|limit|413", message, re.I), message  # refused at upload
        elif _strip_names(value) not in _strip_names(message):
            problems.append(f"{case.name}: app message {message[:200]!r} is not the library's {value[:120]!r}")
        if not app.alive():
            pytest.fail(f"the app died on {case.name}:\n{app.log_tail()}")
    after = _call(client, good, model)
    assert after[0] == baseline[0] and after[1] == baseline[1]  # still serving, same answer
    assert not problems, "\n".join(problems)


def _raw_call(url: str, api: str, data: list) -> str:
    """One queue call over plain HTTP, as any script could send it (gradio_client would upload local paths)."""
    import urllib.request

    request = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=60) as r:
        return r.read().decode()


def test_app_api_reads_only_uploaded_files(app, tmp_path) -> None:
    """A caller may not name a file on the server: only what it uploaded is read."""
    model = json.loads(_raw_call(app.url, "models", []).split("data: ", 1)[1])[0]["default"]
    secret = tmp_path / "someone_elses_photo.png"
    secret.write_bytes(encode(Image.fromarray(pattern(64, 64)), "PNG"))
    for target in (secret, Path("/etc/passwd")):
        payload = {"path": str(target), "meta": {"_type": "gradio.FileData"}}
        answer = _raw_call(app.url, "analyze", [payload, model, "", -1, "inferno", 0.5])
        assert answer.startswith("event: error") and "not uploaded by a user" in answer, answer[:300]
        assert "looks like text" not in answer and "layers" not in answer
    assert app.alive()
