"""Your own model, per SGE form and per door (library, CLI, app): the largest difference between the
captured gates and the module's own sigmoid output on the same forward.

    python bench/own_models.py            # prints the table, writes bench/OWN_MODELS.md

The forms come from the test corpus (tests/own_models/variants.py) and the README's example models
(docs/own_models/); each records or exposes the gate it computes, so the reference is the module's own.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs/own_models"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from sge_viz import analyze, wrap_model  # noqa: E402
from sge_viz.app.catalogue import ModelService  # noqa: E402
from tests.own_models import variants as v  # noqa: E402

CASES = {  # name: (factory expression in variants / docs, wrap_model keyword arguments)
    "blog copy (sig child, bias 0)": ("v.ConvNet(v.BlogSGE)", {"input_size": 48}),
    "sigmoid child renamed, G": ("v.ConvNet(v.RenamedSigmoidSGE)", {"input_size": 48}),
    "gamma/beta (G,), torch.sigmoid, num_groups": ("v.ConvNet(v.FunctionalSGE)", {"input_size": "40x64"}),
    "sig child present, x.sigmoid() called": ("v.ConvNet(v.SigChildButFunctionalSGE)", {"input_size": 48}),
    "one instance called twice": ("v.SharedSGENet()", {"input_size": 32}),
    "left in train mode": ("v.ConvNet(v.BlogSGE).train()", {"input_size": 48}),
    "1 channel, full resize": ("v.ConvNet(v.FunctionalSGE, in_channels=1)",
                               {"input_size": "32x48", "channels": 1, "resize": "full"}),
    "SGE after the residual addition": ("v.post_add_resnet18()", {"input_size": 128}),
    "torchvision ResNet-18, SGE after bn2": ("resnet18_sge(num_classes=10)", {"input_size": "96x128"}),
}


def own_gates(model: torch.nn.Module, run, *args) -> tuple[object, dict[str, np.ndarray]]:
    """``run(*args)``'s result and the gates (G, h, w) its forward computed in every SGE layer, by the recorder's
    names (``name``, ``name#2`` for a second call of one module)."""
    recording = [m for m in model.modules() if hasattr(m, "gates")]
    for m in recording:
        m.gates.clear()
    result = run(*args)
    gates = {}
    for name, m in model.named_modules():
        for i, gate in enumerate(getattr(m, "gates", [])):
            gates[name if i == 0 else f"{name}#{i + 1}"] = gate[0].numpy()
    return result, gates


def instrument(model: torch.nn.Module) -> None:
    """Modules with an nn.Sigmoid child that do not record their gates: record them in ``gates`` (B, G, h, w)."""
    for m in list(model.modules()):
        sig = getattr(m, "sig", None)
        if isinstance(sig, torch.nn.Sigmoid) and not hasattr(m, "gates") and hasattr(m, "groups"):
            m.gates = []
            sig.register_forward_hook(
                lambda _s, _i, out, m=m: m.gates.append(out.detach().reshape(-1, m.groups, *out.shape[-2:])))


def worst(gates: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> float:
    assert set(gates) == set(ref), (sorted(gates), sorted(ref))
    return max(float(np.abs(gates[n] - ref[n]).max()) for n in ref)


def main() -> int:
    from resnet18_sge import resnet18_sge  # noqa: F401  (used by the CASES expressions)

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 210, 3), dtype=np.uint8))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_path = tmp / "image.png"
        image.save(image_path)
        for case, (expr, kwargs) in CASES.items():
            torch.manual_seed(0)
            model = eval(expr)
            instrument(model)
            loaded = wrap_model(model, **kwargs)
            result, ref = own_gates(model, analyze, loaded, image)
            lib = worst({lg.name: lg.gate for lg in result.layers}, ref)
            app = ModelService(models=[loaded])
            result, ref = own_gates(model, app.run_analysis, app.default, image)
            app_diff = worst({lg.name: lg.gate for lg in result.layers}, ref)
            # The CLI, in another process: the same weights through --model-def + --checkpoint.
            weights = tmp / "weights.pth"
            torch.save(model.state_dict(), weights)
            (tmp / "defs.py").write_text(f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'docs/own_models')!r}]\n"
                                         "from tests.own_models import variants as v\n"
                                         "from resnet18_sge import resnet18_sge\n"
                                         f"def build():\n    return {expr}\n")
            flags = [f"--{k.replace('_', '-')}={val}" for k, val in kwargs.items()]
            out = tmp / "out"
            done = subprocess.run([sys.executable, "-m", "sge_viz", "analyze", str(image_path), "--model-def",
                                   f"{tmp / 'defs.py'}:build", "--checkpoint", str(weights), *flags, "--out", str(out),
                                   "--device", "cpu", "--no-pictures"], cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                cli = f"failed: {done.stderr.strip().splitlines()[-1]}"
            else:
                npz = np.load(out / "image/gates.npz")
                # the CLI saw the same view through the same weights: the library run's gates are its reference
                cli = f"{worst({n: npz[n] for n in npz.files}, ref):.1e}"
            rows.append((case, len(result.layers), f"{lib:.1e}", cli, f"{app_diff:.1e}",
                         "classify" if loaded.config.classifies else "gates only"))
            print(f"{case:<45} layers {rows[-1][1]:>2}  library {rows[-1][2]}  CLI {cli}  app {rows[-1][4]}",
                  flush=True)
        # Without its code: the post-addition network's file loaded by key names into the built-in layout.
        torch.manual_seed(0)
        model = v.post_add_resnet18().eval()
        torch.save(model.state_dict(), tmp / "post_add.pth")
        from sge_viz.capture.preprocess import normalise
        from sge_viz.models import create_model

        by_keys = create_model(checkpoint_path=tmp / "post_add.pth", device="cpu")
        result = analyze(by_keys, image)
        instrument(model)
        x = normalise(result.image, by_keys.config).unsqueeze(0)
        with torch.no_grad():
            _, ref = own_gates(model, model, x)
        keys_diff = worst({lg.name: lg.gate for lg in result.layers}, ref)
        print(f"SGE after the addition, by key names only: {keys_diff:.3f} (with the note: {by_keys.config.layout_note[:60]}...)")
    lines = ["# Your own model: captured gates vs the module's own sigmoid",
             "", "Written by `python bench/own_models.py`: the largest absolute difference over every gate value of",
             "every SGE layer, on one 210x150 image, per door (target <= 1e-5).", "",
             "| SGE form | layers | library | CLI | app | output |", "|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |" for r in rows]
    lines += ["", f"Without its code, the post-addition network's state_dict loads by key names into the built-in layout "
              f"(SGE before the addition): its gates then differ from the network's own by up to {keys_diff:.3f}, "
              "which is why every result of such a file carries the layout note and points to `--model-def`."]
    (ROOT / "bench/OWN_MODELS.md").write_text("\n".join(lines) + "\n")
    print("wrote bench/OWN_MODELS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
