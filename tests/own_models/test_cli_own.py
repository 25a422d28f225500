"""Your own model through the command line: --model-def, checkpoint forms, prefixes, refusals, notes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import perturb

from sge_viz.cli import main
from sge_viz.models.registry import build_model

from . import variants as v

VARIANTS = str(Path(v.__file__))
EXAMPLES = Path(__file__).resolve().parents[2] / "docs/own_models"  # the README's example models


def image_set(tmp_path: Path, image_file: Path, count: int, degrees: int) -> Path:
    """A folder of ``count`` copies of the test image, each rotated ``degrees`` more than the last."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        Image.open(image_file).rotate(degrees * i).save(folder / f"im{i}.png")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def post_add(tmp_path_factory):
    """A trained-looking post-addition SGE ResNet-18 and its state_dict file (the official key names)."""
    torch.manual_seed(0)
    model = v.post_add_resnet18().eval()
    path = tmp_path_factory.mktemp("post_add") / "post_add.pth"
    torch.save(model.state_dict(), path)
    return model, path


def own_sigmoid_gates(model, x) -> dict[str, np.ndarray]:
    ref = {}
    handles = [m.sig.register_forward_hook(lambda _m, _i, out, n=n: ref.__setitem__(n, out.detach().clone()))
               for n, m in model.named_modules() if n.endswith(".sge")]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return {n: g.reshape(-1, 64, *g.shape[-2:])[0].numpy() for n, g in ref.items()}


def test_same_keys_other_forward_is_never_silent(capsys, tmp_path, post_add, image_file):
    model, path = post_add
    # By key names alone: it loads into the built-in layout, and the output says which layout that is.
    code, out, err = run(capsys, "analyze", image_file, "--checkpoint", path, "--out", tmp_path / "by_keys",
                         "--device", "cpu")
    assert code == 0 and "Built-in layout" in err and "--model-def" in err
    stats = json.loads((tmp_path / "by_keys/photo/stats.json").read_text())
    assert any("Built-in layout" in note for note in stats["notes"])  # where the numbers are read, too
    # And in an image set's summary and report.
    folder = image_set(tmp_path, image_file, 2, 20)
    code, out, err = run(capsys, "dissect", folder, "--checkpoint", path, "--out", tmp_path / "set_by_keys",
                         "--device", "cpu", "--no-pictures")
    assert code == 0, err
    summary = json.loads((tmp_path / "set_by_keys/summary.json").read_text())
    assert any("Built-in layout" in note and "--model-def" in note for note in summary["model"]["notes"])
    assert "Built-in layout" in (tmp_path / "set_by_keys/index.html").read_text()
    # With its code: the network's own gates, equal to its sigmoid outputs.
    code, out, err = run(capsys, "analyze", image_file, "--model-def", f"{VARIANTS}:post_add_resnet18",
                         "--checkpoint", path, "--out", tmp_path / "own", "--device", "cpu")
    assert code == 0, err
    from sge_viz.capture.preprocess import center_crop_view, normalise
    from sge_viz.io.images import open_image
    from sge_viz.models.config import ModelConfig

    config = ModelConfig(arch="x", num_classes=1000, input_size=224, resize_size=256)
    x = normalise(center_crop_view(open_image(image_file), 256, 224), config).unsqueeze(0)
    ref = own_sigmoid_gates(model, x)
    own = np.load(tmp_path / "own/photo/gates.npz")
    by_keys = np.load(tmp_path / "by_keys/photo/gates.npz")
    worst_own = max(np.abs(own[n] - ref[n]).max() for n in ref)
    worst_keys = max(np.abs(by_keys[n] - ref[n]).max() for n in ref)
    assert worst_own <= 1e-5
    assert worst_keys > 0.05  # the built-in layout is a different network: why the note must be there


def test_fine_tuned_heads_groups_and_backbones(capsys, tmp_path, image_file):
    torch.manual_seed(0)
    model, _ = build_model("sge_resnet18", None)
    perturb(model)
    state = model.state_dict()
    # groups = 32: the SGE parameters say so
    g32 = {k: (v[:, :32] if k.endswith((".sge.weight", ".sge.bias")) else v) for k, v in state.items()}
    g32["fc.weight"], g32["fc.bias"] = torch.randn(7, 512), torch.randn(7)
    torch.save({"state_dict": {"module." + k: t for k, t in g32.items()}}, tmp_path / "g32.pth.tar")
    code, out, err = run(capsys, "analyze", image_file, "--checkpoint", tmp_path / "g32.pth.tar", "--out",
                         tmp_path / "g32", "--device", "cpu")
    assert code == 0, err
    stats = json.loads((tmp_path / "g32/photo/stats.json").read_text())
    assert {e["groups"] for e in stats["layers"].values()} == {32}
    assert len(stats["predictions"]) == 5 and max(p["index"] for p in stats["predictions"]) < 7
    # mmdetection style: backbone.* plus a neck and a head; gates only, with a note
    mm = {"backbone." + k: t for k, t in state.items() if not k.startswith("fc.")}
    mm["neck.lateral.weight"] = torch.randn(4, 4)
    torch.save({"meta": {"epoch": 12}, "state_dict": mm}, tmp_path / "mmdet.pth")
    code, out, err = run(capsys, "analyze", image_file, "--checkpoint", tmp_path / "mmdet.pth", "--out",
                         tmp_path / "mm", "--device", "cpu")
    assert code == 0, err
    assert "backbone." in err and "Gates only" in err and "gates only" in out
    stats = json.loads((tmp_path / "mm/photo/stats.json").read_text())
    assert stats["predictions"] == [] and len(stats["layers"]) == 8
    code, out, err = run(capsys, "predict", image_file, "--checkpoint", tmp_path / "mmdet.pth", "--device", "cpu")
    assert code != 0 and "gates only" in err.lower()


def test_prefixes_misfits_and_pickles(capsys, tmp_path, image_file):
    torch.manual_seed(0)
    net = v.ConvNet(v.FunctionalSGE)
    torch.save({"model": {"encoder." + k: t for k, t in net.state_dict().items()}}, tmp_path / "enc.pth")
    (tmp_path / "defs.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(VARIANTS).parents[2])!r})\n"
        + "from tests.own_models import variants as v\n"
        "def build(kind='functional'):\n    return v.ConvNet(v.FunctionalSGE if kind == 'functional' else v.BlogSGE)\n")
    spec = f"{tmp_path / 'defs.py'}:build"
    base = ["analyze", image_file, "--model-def", spec, "--input-size", "48x64", "--device", "cpu"]
    code, out, err = run(capsys, *base, "--checkpoint", tmp_path / "enc.pth", "--out", tmp_path / "a")
    assert code != 0 and "missing" in err and "unexpected" in err and "--strip-prefix" in err
    code, out, err = run(capsys, *base, "--checkpoint", tmp_path / "enc.pth", "--strip-prefix", "encoder.",
                         "--out", tmp_path / "b")
    assert code == 0, err
    assert json.loads((tmp_path / "b/photo/stats.json").read_text())["image_size"] == [48, 64]
    code, out, err = run(capsys, *base, "--model-kwargs", '{"kind": "blog"}', "--checkpoint", tmp_path / "enc.pth",
                         "--strip-prefix", "encoder.", "--out", tmp_path / "c")
    assert code != 0 and "wrong shape" not in err and "missing" in err  # gamma/beta vs weight/bias
    # a whole pickled model: refused, pointing to --model-def; --trust-pickle loads it with a warning
    torch.save(net, tmp_path / "whole.pt")
    code, out, err = run(capsys, "predict", image_file, "--checkpoint", tmp_path / "whole.pt", "--device", "cpu")
    assert code != 0 and "--model-def" in err and "--trust-pickle" in err
    with pytest.warns(UserWarning, match="ran code"):
        code, out, err = run(capsys, "predict", image_file, "--checkpoint", tmp_path / "whole.pt", "--trust-pickle",
                             "--input-size", "32", "--device", "cpu")
    assert code == 0, err
    assert "trust-pickle" in err
    # the user's flags without --model-def are a usage error; bad specs say what is wrong
    code, out, err = run(capsys, "predict", image_file, "--input-size", "32")
    assert code == 2 and "--model-def" in err
    for bad, words in ((f"{tmp_path}/nope.py:build", "does not exist"), (f"{spec[:-6]}:nothing", "no attribute"),
                       ("torch:__version__", "not callable"), ("json:dumps", "failed")):
        code, out, err = run(capsys, "predict", image_file, "--model-def", bad)
        assert code != 0 and words in err, (bad, err)


def scriptable() -> torch.nn.Module:
    """A small SGE classifier TorchScript can compile (the corpus' modules keep Python lists)."""
    from sge_viz.models.sge import SpatialGroupEnhance

    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), SpatialGroupEnhance(4),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()


def test_torchscript_says_why_and_what_to_pass(capsys, tmp_path, image_file):
    torch.manual_seed(0)
    net = v.ConvNet(v.BlogSGE).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "traced.pt")
    torch.jit.save(torch.jit.script(scriptable()), tmp_path / "scripted.pt")
    torch.save(net.state_dict(), tmp_path / "weights.pth")  # a plain torch.save zip is not taken for one
    (tmp_path / "defs.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(VARIANTS).parents[2])!r})\nimport torch\n"
        "from tests.own_models import variants as v\n"
        "from sge_viz.models.sge import SpatialGroupEnhance\n"
        "def scripted():\n    return torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), "
        "SpatialGroupEnhance(4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)))\n"
        "def plain():\n    return v.ConvNet(v.BlogSGE)\n")
    for name in ("traced.pt", "scripted.pt"):
        for extra in ((), ("--trust-pickle", "--input-size", "32")):
            code, out, err = run(capsys, "predict", image_file, "--checkpoint", tmp_path / name, "--device", "cpu",
                                 *extra)
            assert code != 0 and "TorchScript" in err and "cannot be hooked" in err and "--model-def" in err, err
            assert "corrupt" not in err and "check --input-size" not in err
    code, out, err = run(capsys, "predict", image_file, "--model-def", f"{tmp_path / 'defs.py'}:scripted",
                         "--input-size", "32", "--device", "cpu")
    assert code != 0 and "returned a TorchScript module" in err and "before torch.jit.script" in err, err
    code, out, err = run(capsys, "predict", image_file, "--model-def", f"{tmp_path / 'defs.py'}:plain",
                         "--checkpoint", tmp_path / "weights.pth", "--input-size", "32", "--device", "cpu")
    assert code == 0, err


def test_backbone_keys_that_fit_are_never_stripped(capsys, tmp_path, image_file):
    # A whole detector with its own 'backbone.' keys: loaded as saved into a matching --model-def.
    (tmp_path / "det.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(VARIANTS).parents[2])!r})\nimport torch\nfrom torch import nn\n"
        "from tests.own_models import variants as v\n"
        "class Backbone(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), v.BlogSGE(4))\n"
        "    def forward(self, x):\n        return self.layer1(x)\n"
        "class Detector(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.backbone = Backbone()\n        self.head = nn.Linear(8, 3)\n"
        "    def forward(self, x):\n        return self.head(self.backbone(x).mean((2, 3)))\n"
        "def backbone():\n    return Detector().backbone\n")
    sys_path = str(tmp_path)
    import sys

    sys.path.insert(0, sys_path)
    try:
        import det
    finally:
        sys.path.remove(sys_path)
    torch.manual_seed(0)
    torch.save(det.Detector().state_dict(), tmp_path / "det.pth")
    base = ["predict", image_file, "--input-size", "32", "--device", "cpu", "--checkpoint", tmp_path / "det.pth"]
    code, out, err = run(capsys, *base, "--model-def", f"{tmp_path / 'det.py'}:Detector")
    assert code == 0, err
    assert "Recognised a 'backbone.' prefix" not in err + out
    # The backbone alone (gates only): the prefix is recognised and stripped, with a note; --strip-prefix ''
    # keeps every key, so they do not fit.
    gates = ["analyze", *base[1:], "--model-def", f"{tmp_path / 'det.py'}:backbone", "--out", tmp_path / "out"]
    code, out, err = run(capsys, *gates)
    assert code == 0 and "Recognised a 'backbone.' prefix" in err + out, err
    code, out, err = run(capsys, *gates, "--strip-prefix", "")
    assert code != 0 and "unexpected" in err and "backbone.layer1" in err


def test_dissect_and_info_take_your_model(capsys, tmp_path, image_file):
    folder = image_set(tmp_path, image_file, 3, 30)
    spec = f"{EXAMPLES / 'unet_sge.py'}:UNet"
    code, out, err = run(capsys, "dissect", folder, "--model-def", spec, "--channels", "1", "--resize", "full",
                         "--input-size", "64", "--out", tmp_path / "d", "--no-pictures", "--device", "cpu")
    assert code == 0, err
    summary = json.loads((tmp_path / "d/summary.json").read_text())
    assert summary["images"] == 3 and set(summary["layers"]) == {"enc1.3", "enc2.3", "dec.3"}


def test_resume_refuses_another_network_under_the_same_name(capsys, tmp_path, image_file):
    from sge_viz.dissect.engine import STATE_FILE, run_local
    from sge_viz.io.inputs import collect
    from sge_viz.models.factory import create_model

    folder = image_set(tmp_path, image_file, 2, 40)
    out = tmp_path / "d"
    out.mkdir()
    # A run of one random network, stopped after its first batch: its state stays (a finished run removes it).
    loaded = create_model("sge_resnet18", device="cpu", random_weights=True)

    def stop(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_local(loaded, collect([folder]).items, 9, batch_size=1, state_path=out / STATE_FILE, save_every=1,
                  progress=stop)
    assert (out / STATE_FILE).is_file()
    base = ["dissect", folder, "--model", "sge_resnet18", "--random-weights", "--out", out, "--no-pictures",
            "--device", "cpu"]
    code, _, err = run(capsys, *base, "--resume")  # a fresh random network: other weights, same name
    assert code != 0 and "another run" in err and "weights" in err


def test_model_code_inside_a_package_with_relative_imports(capsys, tmp_path, image_file, monkeypatch):
    """As in the official repository: ``from .common_head import *`` in the model's file."""
    pkg = tmp_path / "mynets"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "common_head.py").write_text("import torch\nfrom torch import nn\n")
    (pkg / "sge_net.py").write_text(
        "from .common_head import *\n\n\n"
        "class SpatialGroupEnhance(nn.Module):\n"
        "    def __init__(self, groups=4):\n"
        "        super().__init__()\n"
        "        self.groups = groups\n"
        "        self.weight = nn.Parameter(torch.randn(1, groups, 1, 1))\n"
        "        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))\n"
        "        self.sig = nn.Sigmoid()\n\n"
        "    def forward(self, x):\n"
        "        b, c, h, w = x.size()\n"
        "        x = x.view(b * self.groups, -1, h, w)\n"
        "        t = (x * x.mean((2, 3), keepdim=True)).sum(1, keepdim=True).view(b * self.groups, -1)\n"
        "        t = ((t - t.mean(1, keepdim=True)) / (t.std(1, keepdim=True) + 1e-5)).view(b, self.groups, h, w)\n"
        "        x = x * self.sig((t * self.weight + self.bias).view(b * self.groups, 1, h, w))\n"
        "        return x.view(b, c, h, w)\n\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SpatialGroupEnhance(4), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(8, 3))\n")
    monkeypatch.chdir(tmp_path)
    for spec in ("mynets/sge_net.py:build", "mynets.sge_net:build"):
        code, out, err = run(capsys, "predict", image_file, "--model-def", spec, "--input-size", "32")
        assert code == 0, (spec, err)
        assert len([line for line in out.splitlines() if "%" in line]) == 3


def test_dissect_pictures_of_a_non_square_model(capsys, tmp_path, image_file):
    from PIL import Image

    folder = image_set(tmp_path, image_file, 3, 25)
    spec = f"{EXAMPLES / 'resnet18_sge.py'}:resnet18_sge"
    code, out, err = run(capsys, "dissect", folder, "--model-def", spec, "--model-kwargs", '{"num_classes": 10}',
                         "--input-size", "96x128", "--out", tmp_path / "d", "--device", "cpu", "--top-k", "2")
    assert code == 0, err
    fig2 = np.asarray(Image.open(next((tmp_path / "d/figures").glob("fig2_*.png"))).convert("RGB"))
    assert fig2.shape[1] > 200 and (tmp_path / "d/groups").is_dir()
    patch = np.asarray(Image.open(next((tmp_path / "d/groups").rglob("g00.png"))).convert("RGB"))
    assert patch.std() > 5  # real pixels, not an empty tile
