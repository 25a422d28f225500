"""Measure the demo model's out-of-domain signal, choose its threshold and store both with the weights.

    python -m training.ood                 # the default model: measure, print, write the parameters + card
    python -m training.ood --no-write      # print only
    python -m training.ood --checkpoint checkpoints/sge_resnet_demo.safetensors --score staged   # the original
    python -m training.ood --no-write --scene-seed 20250906 --ood-seed 8   # confirm on other scenes/images

The signal (``sge_viz.domain.detector``), by default "blocks + gates + energy": the squared Mahalanobis
distance to the nearest class mean (one shared within-class covariance) of every residual block's output
averaged over positions and of the last SGE layer's mean gate per group, plus the logits' energy, each on
a scale set by the fit scenes. ``--score staged`` ("stages + energy") reads every stage's output instead
of every block's and no gates; ``--score mahalanobis`` stores the distance of the pooled features
entering the classifier alone. All three are measured and reported, with each earlier stage's distance
alone. Three disjoint sets
of held-out in-domain scenes of the checkpoint's own recipe (``recipe.scenes`` in its metadata: Cluttered
Fashion-MNIST or the randomised scenes; test split, seed EVAL_SEED, all after the model card's evaluation indices
0..4999): class means and covariance are fitted on FIT (5000-7999), the threshold is the 95th percentile
of the score on CALIBRATE (8000-9999), and the false-alarm rate and AUROC are measured on TEST
(10000-11999) against out-of-domain images: the four photos in assets/, crops of scikit-image's sample
photos, Fashion-MNIST items alone on plain backgrounds ("shop" pictures; left out for the randomised
recipe, whose shop_style scenes are exactly that), random textures and
natural-image-like (1/f) noise, all through the app's preprocessing. For comparison the same is done
for two scores read off the logits (maximum softmax probability and logsumexp = -energy).

Writing re-saves the checkpoint with the parameters in its metadata (``sge_viz.ood``); the weights are
checked to stay bit-identical.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sge_viz.capture.preprocess import center_crop_view, normalise_batch
from sge_viz.device import pick_device
from sge_viz.domain import detector as ood
from sge_viz.domain.detector import OODDetector, StagedDetector
from sge_viz.domain.pooling import pooled_outputs
from sge_viz.errors import SGEVizError
from sge_viz.metrics.localisation import roc_auc
from sge_viz.models.checkpoint import read_metadata
from sge_viz.models.factory import LoadedModel, load_checkpoint
from sge_viz.resources import default_checkpoint

from . import ASSET_DIR, MODEL_CARD
from .data import ClutteredFashionMNIST, WildFashionMNIST, load_split, view
from .evaluate import EVAL_SAMPLES, EVAL_SEED, set_metadata, update_model_card
from .train import held_out_scenes, scenes_of

FIT = (EVAL_SAMPLES, EVAL_SAMPLES + 3000)  # the model card's evaluation uses indices 0..4999
CALIBRATE = (FIT[1], FIT[1] + 2000)
TEST = (CALIBRATE[1], CALIBRATE[1] + 2000)
PER_KIND = 200
FALSE_ALARM = 0.05
OOD_SEED = 7
SHOP_KIND = "items on plain backgrounds"
START, END = "<!-- ood:start -->", "<!-- ood:end -->"  # the original model's block in the model card
# The default (randomised-scene) model's block, in the card's first section.
SCENES_START, SCENES_END = "<!-- ood-scenes:start -->", "<!-- ood-scenes:end -->"
SCORES = {"blocks": ood.BLOCKS_NAME, "staged": ood.STAGED_NAME, ood.SCORE_NAME: ood.SCORE_NAME}
PHOTOS = ("astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg")
SKIMAGE = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "horse", "moon", "page",
           "rocket", "text", "clock", "logo", "hubble_deep_field", "immunohistochemistry", "retina")


def forward(loaded: LoadedModel, views: list[np.ndarray], modules: list[str],
            batch: int = 250) -> dict[str, np.ndarray]:
    """{module: (N, D) float64} the named modules' outputs averaged over positions ("" = the logits) for
    already-cropped (S, S, 3) uint8 views."""
    parts: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode(), pooled_outputs(loaded.model, modules, parts):
        for i in range(0, len(views), batch):
            loaded.model(normalise_batch(views[i:i + batch], loaded.config, loaded.device))
    return {name: np.concatenate(parts[name]) for name in modules}


def logit_scores(logits: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (N,)} of the logit-based scores, signed so that higher = further from the domain."""
    z = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return {"max softmax probability (negated)": -np.exp(-lse), "energy (-logsumexp)": ood.energy(logits)}


def _rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.clip(array * (255.0 if array.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def ood_views(size: int, resize: int, rng: np.random.Generator, per_kind: int = PER_KIND,
              root: str | None = None) -> dict[str, list[np.ndarray]]:
    """Out-of-domain images, each put through the app's preprocessing (resize, centre crop)."""
    views: dict[str, list[np.ndarray]] = {}

    def crop(img: Image.Image) -> np.ndarray:
        return center_crop_view(img.convert("RGB"), resize, size)

    views["assets photos"] = [crop(Image.open(ASSET_DIR / name)) for name in PHOTOS]

    import skimage.data

    photos = []
    for name in SKIMAGE:
        try:
            photos.append(Image.fromarray(_rgb(getattr(skimage.data, name)())))
        except Exception:  # noqa: BLE001 - a sample that needs a download is just left out
            continue
    crops = []
    for i in range(per_kind):
        img = photos[i % len(photos)]
        w, h = img.size
        side = int(rng.integers(min(w, h) // 4, min(w, h) + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crops.append(crop(img.crop((x, y, x + side, y + side))))
    views["photo crops (skimage.data)"] = crops

    images, _ = load_split("test", root)
    shop = []
    for _ in range(per_kind):
        item = images[int(rng.integers(len(images)))].astype(np.float64) / 255.0
        side = int(rng.integers(36, 60))
        alpha = np.asarray(Image.fromarray((item * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR))
        alpha = alpha.astype(np.float64)[..., None] / 255.0
        background = rng.uniform(0.75, 1.0) * np.ones(3) if rng.random() < 0.5 else rng.uniform(0, 1, 3)
        colour = rng.uniform(0, 1, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(0.0, 0.3))
        canvas = np.ones((size, size, 3)) * background
        x, y = (size - side) // 2, (size - side) // 2
        canvas[y:y + side, x:x + side] = alpha * colour + (1 - alpha) * canvas[y:y + side, x:x + side]
        shop.append(np.clip(canvas * 255, 0, 255).astype(np.uint8))
    views[SHOP_KIND] = shop

    textures = []
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(per_kind):
        kind = i % 3
        if kind == 0:  # a coloured grating
            f, theta = rng.uniform(2, 12), rng.uniform(0, np.pi)
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(theta) + yy * np.sin(theta)))
            img = wave[..., None] * rng.uniform(0, 1, 3) + (1 - wave[..., None]) * rng.uniform(0, 1, 3)
        elif kind == 1:  # a checkerboard
            n = int(rng.integers(2, 12))
            board = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
            img = board * rng.uniform(0, 1, 3) + (1 - board) * rng.uniform(0, 1, 3)
        else:  # white noise
            img = rng.uniform(0, 1, (size, size, 3))
        textures.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    views["random textures"] = textures

    noise = []
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0
    for _ in range(per_kind):
        power = rng.uniform(1.0, 2.0)
        chans = []
        for _c in range(3):
            spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius ** power
            spectrum[0, 0] = 0
            field = np.real(np.fft.ifft2(spectrum))
            chans.append((field - field.min()) / (np.ptp(field) or 1.0))
        noise.append((np.stack(chans, axis=2) * 255).astype(np.uint8))
    views["1/f noise"] = noise
    return views


def _scenes(dataset: ClutteredFashionMNIST | WildFashionMNIST, span: tuple[int, int], size: int):
    samples = [dataset[i] for i in range(*span)]
    return [view(x.image, size) for x in samples], np.array([x.label for x in samples])


def stages(loaded: LoadedModel) -> list[str]:
    """The model's stages, layer1..layerN: the modules whose averaged outputs the staged score reads."""
    return [f"layer{i + 1}" for i in range(getattr(loaded.model, "num_stages", 0))]


def blocks(loaded: LoadedModel) -> list[str]:
    """Every residual block of every stage (layer1.0, layer1.1, ..., layerN.M), in forward order."""
    return [f"{stage}.{name}" for stage in stages(loaded)
            for name, _ in getattr(loaded.model, stage).named_children()]


def last_gates(loaded: LoadedModel) -> list[str]:
    """The last SGE layer's sigmoid (``<block>.sge.sig``), whose output is the gate; [] when there is none."""
    found = [name for name, _ in loaded.model.named_modules() if name.endswith(".sge.sig")]
    return found[-1:]


def measure(loaded: LoadedModel, per_kind: int = PER_KIND, root: str | None = None, scenes: str = "cluttered",
            score: str = ood.SCORE_NAME, scene_seed: int = EVAL_SEED,
            ood_seed: int = OOD_SEED) -> tuple[dict, OODDetector | StagedDetector]:
    """Fit, calibrate and test every score on held-out scenes of the recipe ``scenes`` (see
    ``train.SCENES``, drawn with ``scene_seed``) against out-of-domain images drawn with ``ood_seed``;
    returns the figures and the detector of ``score`` (ood.SCORE_NAME, ood.STAGED_NAME or
    ood.BLOCKS_NAME), its threshold calibrated."""
    cfg = loaded.config
    dataset = held_out_scenes(scenes, scene_seed, TEST[1], root)
    (fit_views, fit_labels), (cal_views, _), (test_views, _) = (_scenes(dataset, s, cfg.input_size)
                                                                for s in (FIT, CALIBRATE, TEST))
    block_modules = blocks(loaded) + last_gates(loaded)
    modules = list(dict.fromkeys([ood.POOLED, ood.LOGITS, *stages(loaded), *block_modules]))
    fitted = forward(loaded, fit_views, modules)
    mahalanobis = OODDetector(*ood.fit(fitted[ood.POOLED], fit_labels), 0.0)
    staged = ood.fit_staged(fitted, fit_labels, stages(loaded))
    by_block = ood.fit_staged(fitted, fit_labels, block_modules, name=ood.BLOCKS_NAME)
    kinds = ood_views(cfg.input_size, cfg.resize_size, np.random.default_rng(ood_seed), per_kind, root)
    if scenes == "wild":  # one item on a plain background is a scene of this recipe (the shop_style shift)
        kinds.pop(SHOP_KIND)

    def all_scores(views):
        pooled = forward(loaded, views, modules)
        out = {ood.SCORE_NAME: mahalanobis.scores(pooled), ood.STAGED_NAME: staged.scores(pooled),
               ood.BLOCKS_NAME: by_block.scores(pooled)}
        # Each earlier stage alone (the last stage's averaged output is the pooled features themselves).
        out.update({f"{ood.SCORE_NAME}, {t.module} output": ood.nearest_distance(pooled[t.module], t.means,
                                                                                 t.precision)
                    for t in staged.terms[:-1]})
        out.update(logit_scores(pooled[ood.LOGITS]))
        return out

    cal, test = all_scores(cal_views), all_scores(test_views)
    outside = {kind: all_scores(v) for kind, v in kinds.items()}
    n = TEST[1] - TEST[0]
    result: dict = {"fit": list(FIT), "calibrate": list(CALIBRATE), "test": list(TEST), "seed": scene_seed,
                    "ood_seed": ood_seed, "split": "t10k", "ood_samples": {k: len(v) for k, v in kinds.items()},
                    "target_false_alarm": FALSE_ALARM, "used": score, "scores": {}}
    for name in test:
        threshold = float(np.quantile(cal[name], 1.0 - FALSE_ALARM))
        all_out = np.concatenate([outside[k][name] for k in kinds])
        labels = np.concatenate([np.ones(n, bool), np.zeros(all_out.size, bool)])
        # roc_auc ranks higher scores as positive: in-domain is positive, so negate the distance-like score.
        entry = {
            "threshold": threshold,
            "false_alarm": float(np.mean(test[name] > threshold)),
            "auroc": float(roc_auc(-np.concatenate([test[name], all_out]), labels)),
            "flagged": float(np.mean(all_out > threshold)),
            "per_kind": {},
        }
        for kind in kinds:
            s = outside[kind][name]
            lab = np.concatenate([np.ones(n, bool), np.zeros(s.size, bool)])
            entry["per_kind"][kind] = {"auroc": float(roc_auc(-np.concatenate([test[name], s]), lab)),
                                       "flagged": float(np.mean(s > threshold))}
        entry["assets_photos"] = dict(zip(PHOTOS, map(float, outside["assets photos"][name])))
        result["scores"][name] = entry
    chosen = result["scores"][score]
    measured = (chosen["threshold"], round(chosen["false_alarm"], 4), round(chosen["auroc"], 4))
    if score in (ood.STAGED_NAME, ood.BLOCKS_NAME):
        return result, (staged if score == ood.STAGED_NAME else by_block).with_threshold(*measured)
    return result, OODDetector(mahalanobis.means, mahalanobis.precision, *measured)


def markdown(result: dict) -> str:
    n = result["test"][1] - result["test"][0]
    total = sum(result["ood_samples"].values())
    fit, cal, test = result["fit"], result["calibrate"], result["test"]
    lines = [
        f"Held-out in-domain scenes (t10k, seed {result['seed']}; none of them is a scene of the evaluation "
        f"above): fit on indices {fit[0]}-{fit[1] - 1} ({fit[1] - fit[0]}), threshold = the 95th percentile on "
        f"{cal[0]}-{cal[1] - 1} ({cal[1] - cal[0]}), false alarms and AUROC on {test[0]}-{test[1] - 1} ({n}). "
        f"Out-of-domain: {total} images ({', '.join(f'{k}: {v}' for k, v in result['ood_samples'].items())}), "
        "all through the app's preprocessing. AUROC: in-domain scenes against out-of-domain images (1 = "
        "perfectly separated, 0.5 = chance). Flagged: share above the threshold.",
        "",
        "| score | threshold | in-domain false alarms | AUROC | OOD flagged | "
        + " | ".join(f"{k}: AUROC / flagged" for k in result["ood_samples"]) + " |",
        "| --- " * (5 + len(result["ood_samples"])) + "|",
    ]
    for name, e in result["scores"].items():
        label = f"**{name} (used)**" if name == result.get("used", ood.SCORE_NAME) else name
        cells = [f"{e['per_kind'][k]['auroc']:.3f} / {e['per_kind'][k]['flagged']:.0%}" for k in result["ood_samples"]]
        lines.append(f"| {label} | {e['threshold']:.4g} | {e['false_alarm']:.1%} of {n} | {e['auroc']:.3f} | "
                     f"{e['flagged']:.0%} of {total} | " + " | ".join(cells) + " |")
    used = result["scores"].get(result.get("used", ood.SCORE_NAME), {})
    if "assets_photos" in used:
        lines += ["", f"The four photos in assets/ under the used score (threshold {used['threshold']:.3g}): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in used["assets_photos"].items()) + "."]
    return "\n".join(lines)


def write_detector(checkpoint: Path, detector: OODDetector | StagedDetector) -> None:
    """Re-save the checkpoint with the detector in its metadata; the weights stay bit-identical."""
    set_metadata(checkpoint, ood.OOD_KEY, detector.to_json())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ood", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=default_checkpoint(),
                   help="default: the default model, sge_resnet_demo_scenes")
    p.add_argument("--per-kind", type=int, default=PER_KIND)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-root", default=None)
    p.add_argument("--card", type=Path, default=MODEL_CARD)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--score", choices=tuple(SCORES), default="blocks",
                   help="the score to store: blocks (every residual block + the last SGE layer's gates + energy; "
                        "default), staged (every stage + energy) or mahalanobis (the pooled features entering the "
                        "classifier)")
    p.add_argument("--scene-seed", type=int, default=EVAL_SEED,
                   help=f"seed of the held-out in-domain scenes (default {EVAL_SEED}, the evaluation seed)")
    p.add_argument("--ood-seed", type=int, default=OOD_SEED,
                   help=f"seed of the out-of-domain crops, textures and noise (default {OOD_SEED})")
    args = p.parse_args(argv)
    try:
        loaded = load_checkpoint(args.checkpoint, device=pick_device(args.device))
        recipe = scenes_of(read_metadata(args.checkpoint))
        result, detector = measure(loaded, args.per_kind, args.data_root, recipe, SCORES[args.score],
                                   args.scene_seed, args.ood_seed)
        table = markdown(result)
        print(table)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        if not args.no_write:
            write_detector(args.checkpoint, detector)
            start, end = (SCENES_START, SCENES_END) if recipe == "wild" else (START, END)
            update_model_card(args.card, table, "# Model card\n", start, end, heading="## Out-of-domain signal")
            print(f"wrote {args.card} and the parameters into {args.checkpoint}", file=sys.stderr)
    except SGEVizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
