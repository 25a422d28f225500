"""The package as users get it: a built wheel, installed into a fresh virtualenv, run from another folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def see_our_packages(python: Path) -> Path:
    """Let the virtualenv of ``python`` import what this interpreter has installed, after its own packages.

    ``--system-site-packages`` would give it the *base* interpreter's packages, which inside a virtualenv
    (the README's commands run in one) are not the ones installed there. A .pth file listing this
    interpreter's own site-packages folders works in both cases. Plain folder lines: their .pth files
    (an editable install of the checkout, say) are not run, so nothing points back into the checkout.
    """
    ours = sysconfig.get_paths()
    folders = list(dict.fromkeys([ours["purelib"], ours["platlib"]]))
    where = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=ROOT)
    assert where.returncode == 0, where.stderr
    pth = Path(where.stdout.strip()) / "_sge_viz_test_deps.pth"
    pth.write_text("".join(f"{f}\n" for f in folders))
    return pth


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the checkout."""
    wheels = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                 "-w", str(wheels), "-q"], cwd=wheels)
    assert built.returncode == 0, built.stderr
    (found,) = wheels.glob("sge_viz-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> tuple[Path, Path]:
    """(bin folder, an empty working folder) of a virtualenv holding only the built wheel (its dependencies
    come from this interpreter's site-packages, whether or not it runs in a virtualenv itself)."""
    base = tmp_path_factory.mktemp("wheel")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / "bin"
    see_our_packages(bin_dir / "python")
    # --ignore-installed: the virtualenv sees this interpreter's packages, sge_viz among them when it was installed
    # with `pip install .`; without it pip would call the wheel installed already and put nothing in the venv.
    installed = run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps",
                     "--ignore-installed", "-q", str(wheel)], cwd=base)
    assert installed.returncode == 0, installed.stderr
    work = base / "elsewhere"
    work.mkdir()
    return bin_dir, work


def clean_env() -> dict:
    # Nothing may point back into the checkout.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SGE_VIZ_CHECKPOINTS")}


def test_installed_package_loads_the_demo_model_from_its_own_files(installed):
    bin_dir, work = installed
    code = ("import sge_viz, sys; m = sge_viz.create_model(device='cpu'); "
            "s = sge_viz.create_model('sge_resnet_demo', device='cpu'); "
            "print(sge_viz.__file__); print(m.source); print(m.config.arch); print(s.source)")
    out = run([str(bin_dir / "python"), "-c", code], cwd=work, env=clean_env())
    assert out.returncode == 0, out.stderr
    package_file, source, arch, second = out.stdout.split()
    assert not Path(package_file).is_relative_to(ROOT)  # the installed copy, not the checkout
    for weights in (source, second):  # both demo models from the wheel's own files
        assert Path(weights).is_file() and not Path(weights).resolve().is_relative_to(ROOT)
    # The default is the randomised-scene model; the original is there under its own name.
    assert arch == "sge_resnet_demo" and Path(source).name == "sge_resnet_demo_scenes.safetensors"
    assert Path(second).name == "sge_resnet_demo.safetensors"


def test_installed_cli_predicts_a_shipped_example(installed):
    bin_dir, work = installed
    find = run([str(bin_dir / "python"), "-c",
                "from sge_viz.io.examples import example_paths; print(example_paths()[0])"], cwd=work, env=clean_env())
    assert find.returncode == 0, find.stderr
    example = Path(find.stdout.strip())
    assert example.is_file() and not example.resolve().is_relative_to(ROOT)
    out = run([str(bin_dir / "sge-viz"), "predict", str(example), "--json", "--device", "cpu"], cwd=work,
              env=clean_env())
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["model"] == "sge_resnet_demo_scenes (demo, randomised scenes)" and len(result["predictions"]) == 5
    # The same answer as the checkout's library gives for the same file.
    from sge_viz import create_model, open_image
    from sge_viz.capture.analysis import predict

    here = predict(create_model(device="cpu"), open_image(example))
    assert [p["index"] for p in result["predictions"]] == [p.index for p in here]
    assert result["predictions"][0]["probability"] == pytest.approx(here[0].probability, abs=1e-6)


def test_installed_cli_offers_serve_with_the_apps_flags(installed):
    bin_dir, work = installed
    out = run([str(bin_dir / "sge-viz"), "serve", "--help"], cwd=work, env=clean_env())
    assert out.returncode == 0, out.stderr
    for flag in ("--host", "--port", "--share", "--model", "--checkpoint", "--device", "--random-weights"):
        assert flag in out.stdout
    app = run([sys.executable, str(ROOT / "app.py"), "--help"], cwd=work, env=clean_env())
    assert app.returncode == 0 and app.stdout.split("options:")[1] == out.stdout.split("options:")[1]
    # A bad flag value is refused before anything is served.
    bad = run([str(bin_dir / "sge-viz"), "serve", "--model", "no_such_model", "--device", "cpu"], cwd=work,
              env=clean_env(), timeout=120)
    assert bad.returncode == 2 and "no_such_model" in bad.stderr


def test_the_runtime_never_imports_the_demo_training_code():
    # From the checkout's root, where `training` is importable: the runtime still leaves it alone.
    code = ("import sys, sge_viz, sge_viz.cli, sge_viz.app.layout, sge_viz.app.server; "
            "print([m for m in sys.modules if m == 'training' or m.startswith(('training.', 'sge_viz.demo'))])")
    out = run([sys.executable, "-c", code], cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_wheel_carries_the_runtime_and_its_data_but_not_the_training_code(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith(("training/", "sge_viz/demo/", "tests/", "bench/"))]
    assert not [n for n in names if n.endswith(".jpg") and "/examples/" not in n]  # no background crops
    for path in ("sge_viz/__init__.py", "sge_viz/cli/__init__.py", "sge_viz/app/server.py",
                 "sge_viz/resources/imagenet_classes.txt",
                 "sge_viz/resources/weights/sge_resnet_demo.safetensors",
                 "sge_viz/resources/weights/sge_resnet_demo_scenes.safetensors",
                 "sge_viz/resources/weights/MODEL_CARD.md", "sge_viz/resources/examples/README.md",
                 "sge_viz/resources/examples/classes.json"):
        assert path in names, path
    examples = {Path(n).name for n in names if n.startswith("sge_viz/resources/examples/")}
    shipped = {p.name for p in (ROOT / "assets").iterdir() if p.suffix in (".png", ".jpg")}
    assert shipped and shipped <= examples
    # The example models of the README's "Your own model", which `sge-viz examples` copies.
    models = {Path(n).name for n in names if n.startswith("sge_viz/resources/own_models/")}
    assert models == {p.name for p in (ROOT / "docs/own_models").glob("*.py")}


def test_installed_examples_command_copies_the_files_the_readme_uses(installed):
    bin_dir, work = installed
    out = run([str(bin_dir / "sge-viz"), "examples", "mine"], cwd=work, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert (work / "mine/own_models/resnet18_sge.py").is_file() and (work / "mine/chelsea.jpg").is_file()
