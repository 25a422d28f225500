"""The README's "Your own model" examples, run exactly as written, from a folder of one's own (not the
checkout): the package (on PYTHONPATH, as an installed one would be) carries every file they use."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def examples() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- own-model-example -->\n```(\w+)\n(.*?)```\n<!-- /own-model-example -->", text, re.S)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A fresh folder with the examples copied in by the README's first command."""
    folder = tmp_path_factory.mktemp("my_folder")
    done = run(folder, *examples()[0])
    assert "copied into sge-examples" in done.stdout
    return folder


def run(cwd: Path, lang: str, code: str) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the package importable, nothing else of the checkout
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_readme_has_the_examples():
    assert [lang for lang, _ in examples()] == ["bash", "bash", "bash", "bash", "python"]
    assert not any("docs/own_models" in code or "assets/" in code for _, code in examples())


def test_the_examples_command_copies_every_file_and_keeps_the_users(home):
    copied = home / "sge-examples"
    assert {p.name for p in (copied / "own_models").iterdir()} == {p.name for p in (ROOT / "docs/own_models").glob("*.py")}
    assert (copied / "chelsea.jpg").read_bytes() == (ROOT / "assets/chelsea.jpg").read_bytes()
    assert json.loads((copied / "classes.json").read_text()) == json.loads((ROOT / "assets/classes.json").read_text())
    (copied / "scene_01.png").write_bytes(b"mine")  # a user's own file of that name is never overwritten
    done = run(home, *examples()[0])
    assert "0 files copied" in done.stdout and "kept: sge-examples/scene_01.png" in done.stdout
    assert (copied / "scene_01.png").read_bytes() == b"mine"
    (copied / "scene_01.png").write_bytes((ROOT / "assets/scene_01.png").read_bytes())


def test_fine_tuned_sge_resnet50_in_the_official_form(home):
    done = run(home, *examples()[1])
    assert "sge_resnet50 (finetuned_sge_resnet50.pth.tar)" in done.stdout
    labels = {"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}
    answers = [line.split()[1] for line in done.stdout.splitlines() if re.match(r"\s+\d+\.\d+%", line)]
    assert len(answers) == 5 and set(answers) <= labels
    assert "Built-in layout" in done.stderr and "--model-def" in done.stderr


def test_torchvision_resnet18_with_sge_after_bn2(home):
    run(home, *examples()[2])
    stats = json.loads((home / "runs/resnet18_sge/chelsea/stats.json").read_text())
    assert len(stats["layers"]) == 8 and "layer4.1.bn2.1" in stats["layers"]
    assert stats["image_size"] == [192, 256] and len(stats["predictions"]) == 5
    first = stats["layers"]["layer1.0.bn2.1"]
    assert (first["groups"], first["height"], first["width"]) == (8, 48, 64)  # stride 4: the aspect ratio kept


def test_unet_with_a_functional_sge_copy_is_gates_only(home):
    done = run(home, *examples()[3])
    stats = json.loads((home / "runs/unet_sge/scene_01/stats.json").read_text())
    assert stats["predictions"] == [] and stats["out_of_domain"] is None
    assert set(stats["layers"]) == {"enc1.3", "enc2.3", "dec.3"}
    assert stats["layers"]["enc2.3"]["groups"] == 8 and stats["layers"]["enc2.3"]["height"] == 32
    assert "gates only" in done.stdout and "Gates only" in done.stderr


def test_python_wrap_model(home):
    done = run(home, *examples()[4])
    name, rest = done.stdout.split(" ", 1)
    assert name == "layer4.1.bn2.1" and rest.startswith("(8, 6, 8)")
