"""The README's "Your own model" examples, run exactly as written, from the repository's root."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def examples() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- own-model-example -->\n```(\w+)\n(.*?)```\n<!-- /own-model-example -->", text, re.S)


@pytest.fixture(autouse=True, scope="module")
def _runs_folder():
    (ROOT / "runs").mkdir(exist_ok=True)


def run(lang: str, code: str) -> subprocess.CompletedProcess:
    command = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_readme_has_the_examples():
    assert [lang for lang, _ in examples()] == ["bash", "bash", "bash", "python"]


def test_fine_tuned_sge_resnet50_in_the_official_form():
    done = run(*examples()[0])
    assert "sge_resnet50 (finetuned_sge_resnet50.pth.tar)" in done.stdout
    labels = {"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}
    answers = [line.split()[1] for line in done.stdout.splitlines() if re.match(r"\s+\d+\.\d+%", line)]
    assert len(answers) == 5 and set(answers) <= labels
    assert "Built-in layout" in done.stderr and "--model-def" in done.stderr


def test_torchvision_resnet18_with_sge_after_bn2():
    run(*examples()[1])
    stats = json.loads((ROOT / "runs/resnet18_sge/chelsea/stats.json").read_text())
    assert len(stats["layers"]) == 8 and "layer4.1.bn2.1" in stats["layers"]
    assert stats["image_size"] == [192, 256] and len(stats["predictions"]) == 5
    first = stats["layers"]["layer1.0.bn2.1"]
    assert (first["groups"], first["height"], first["width"]) == (8, 48, 64)  # stride 4: the aspect ratio kept


def test_unet_with_a_functional_sge_copy_is_gates_only():
    done = run(*examples()[2])
    stats = json.loads((ROOT / "runs/unet_sge/scene_01/stats.json").read_text())
    assert stats["predictions"] == [] and stats["out_of_domain"] is None
    assert set(stats["layers"]) == {"enc1.3", "enc2.3", "dec.3"}
    assert stats["layers"]["enc2.3"]["groups"] == 8 and stats["layers"]["enc2.3"]["height"] == 32
    assert "gates only" in done.stdout and "Gates only" in done.stderr


def test_python_wrap_model():
    done = run(*examples()[3])
    name, rest = done.stdout.split(" ", 1)
    assert name == "layer4.1.bn2.1" and rest.startswith("(8, 6, 8)")
