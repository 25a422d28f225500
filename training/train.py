"""Train the demo model and its plain twin (in lockstep, on the same batches).

    python -m training.train                 # the shipped recipe: Cluttered Fashion-MNIST, SGE model + plain twin
    python -m training.train --which sge     # only the SGE model
    python -m training.train --plain         # only the plain twin (use_sge=False)
    python -m training.train --scenes wild --epochs 4 --samples-per-epoch 21120 --warmup-steps 100
        --seed 0 --out-dir runs/wild0 --checkpoint runs/wild0/sge.safetensors
        --plain-checkpoint runs/wild0/plain.safetensors
                                              # (one line) the randomised-scene candidate of the model card
    python -m training.train --scenes wild --which sge --init checkpoints/sge_resnet_demo_scenes.safetensors
        --item-frac 0.2 0.85 --epochs 2 --samples-per-epoch 28160 --lr 0.02 --warmup-steps 20 --device cpu
        --threads 2 --out-dir runs/small --checkpoint runs/small/sge.safetensors
                                                 # (one line) continue training the default model, items down to 20%

Every epoch sees fresh scenes (epoch e uses sample indices e*N .. e*N+N-1 of
the train split), so the data never repeats. A checkpoint of the whole training
state is written to ``--out-dir`` after every epoch and picked up again when the
same command is rerun, so an interrupted run resumes where it stopped.

``--init CHECKPOINT`` (and ``--init-plain`` for the twin) continues training from a checkpoint's weights
instead of the seeded initialisation; the model keeps that checkpoint's input normalisation.
``--item-frac LO HI`` changes the item sizes of the randomised scenes (``SceneConfig.item_frac``).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sge_viz.device import describe_device, pick_device
from sge_viz.errors import SGEVizError
from sge_viz.models.checkpoint import load_strict, read_checkpoint, read_metadata, save_safetensors
from sge_viz.models.config import ModelConfig
from sge_viz.models.registry import DEMO_ARCH, DEMO_KWARGS, build_model

from . import DEMO_CHECKPOINT, PLAIN_CHECKPOINT
from .data import (
    FASHION_MNIST_CLASSES,
    ClutterConfig,
    ClutteredFashionMNIST,
    SceneConfig,
    TorchCluttered,
    WildFashionMNIST,
    data_stats,
)

TRAIN_SEED_OFFSET = 0  # training scenes use seeds args.seed + this; evaluation uses a seed never used here
SCENES = ("cluttered", "wild")  # cluttered: ClutterConfig (the shipped model); wild: SceneConfig (randomised)


def recipe_scenes(scenes: str, split: str, seed: int, length: int, root: str | None = None,
                  scene_config: SceneConfig | None = None) -> ClutteredFashionMNIST | WildFashionMNIST:
    """The scenes of a recipe ("cluttered" or "wild") from one split; "wild" scenes also take their photo
    backgrounds from that split's own photo set, drawn by ``scene_config`` (default ``SceneConfig()``)."""
    if scenes == "cluttered":
        return ClutteredFashionMNIST(split, seed=seed, length=length, root=root)
    if scenes == "wild":
        return WildFashionMNIST(split, seed=seed, length=length, root=root, config=scene_config or SceneConfig())
    raise ValueError(f"unknown scenes {scenes!r}: one of {', '.join(SCENES)}")


def training_scenes(scenes: str, seed: int, length: int, root: str | None = None,
                    scene_config: SceneConfig | None = None) -> ClutteredFashionMNIST | WildFashionMNIST:
    """The training set of a scene recipe: always the train split (and, for "wild", the train photos)."""
    return recipe_scenes(scenes, "train", seed, length, root, scene_config)


def held_out_scenes(scenes: str, seed: int, length: int, root: str | None = None
                    ) -> ClutteredFashionMNIST | WildFashionMNIST:
    """Held-out scenes of a recipe: always the test split (and, for "wild", the test photos)."""
    return recipe_scenes(scenes, "test", seed, length, root)


def scenes_of(metadata: dict) -> str:
    """Which scene recipe a checkpoint was trained on, from its metadata ("cluttered" when unrecorded)."""
    recipe = metadata.get("recipe")
    return recipe.get("scenes", "cluttered") if isinstance(recipe, dict) else "cluttered"


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights (recorded in the checkpoint's metadata)."""

    epochs: int = 6
    samples_per_epoch: int = 40000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    sge_lr_mult: float = 10.0  # SGE's weight/bias learn this much faster, so the gates can become decisive
    label_smoothing: float = 0.0
    seed: int = 0
    input_size: int = 64

    @property
    def steps_per_epoch(self) -> int:
        return self.samples_per_epoch // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


# What a model of each recipe knows, written into its config (the app's domain card shows it).
WILD_DOMAIN = dict(
    description=("Recognises one clothing item (10 Fashion-MNIST classes) in a small scene resized to 64x64: "
                 "light or dark, tinted or grey, on noise, gradients, plain light backgrounds or photo crops, "
                 "among 0-12 clutter fragments. It has never seen a photograph of clothing, nor a photograph "
                 "without one of its items pasted on it: on photographs its classes and gates mean little."),
    training_data=("randomised Fashion-MNIST scenes: canvas 48-160 px, the item 35-85% of it; noise, gradient, "
                   "plain or photo backgrounds; 0-12 clutter fragments; mild rotation, blur and JPEG"),
)


def demo_config(mean: tuple[float, ...], std: tuple[float, ...], size: int,
                arch_kwargs: dict | None = None, scenes: str = "cluttered", scene_count: int | None = None,
                item_frac: tuple[float, float] | None = None) -> ModelConfig:
    """The demo architecture's config; a "wild" model also records what it knows (the domain card)."""
    domain = {}
    if scenes == "wild":
        count = f", {scene_count // 1000}k generated training scenes" if scene_count else ""
        data = WILD_DOMAIN["training_data"]
        if item_frac is not None and tuple(item_frac) != SceneConfig().item_frac:
            data = data.replace("the item 35-85% of it", f"the item {item_frac[0]:.0%}-{item_frac[1]:.0%} of it")
        domain = dict(description=WILD_DOMAIN["description"], training_data=data + count)
    return ModelConfig(arch=DEMO_ARCH, num_classes=10, input_size=size, resize_size=size, mean=tuple(mean),
                       std=tuple(std), class_names=FASHION_MNIST_CLASSES,
                       arch_kwargs=dict(arch_kwargs if arch_kwargs is not None else DEMO_KWARGS), **domain)


def param_groups(model: nn.Module, weight_decay: float, sge_lr_mult: float = 1.0) -> list[dict]:
    """Groups: conv/linear weights (decayed), BN and biases (not decayed), SGE weight/bias (not decayed,
    learning rate times ``sge_lr_mult``). Decaying SGE's weight would pull every gate to a constant."""
    decay, no_decay, sge = [], [], []
    for name, p in model.named_parameters():
        if ".sge." in name:
            sge.append(p)
        else:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0}]
    if sge:
        groups.append({"params": sge, "weight_decay": 0.0, "lr_mult": float(sge_lr_mult)})
    return groups


def lr_at(step: int, recipe: Recipe) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.total_steps - recipe.warmup_steps)
    return 0.5 * recipe.lr * (1 + math.cos(math.pi * min(1.0, progress)))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@dataclass
class TrainResult:
    model: nn.Module
    config: ModelConfig
    seconds: float
    last_epoch_accuracy: float
    last_epoch_loss: float


def _resume(state_path: Path, recipe: Recipe, use_sge: bool, scenes: str, model: nn.Module,
            optimizer: torch.optim.Optimizer, start: dict | None = None) -> tuple[int, float, float, float] | None:
    """Load a matching training state into ``model``/``optimizer``: (epoch, seconds, acc, loss), or None.
    ``start``: what else must match (the scene config and the initial weights), as stored in the state."""
    if not state_path.is_file():
        return None
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if not (state["recipe"] == asdict(recipe) and state["use_sge"] == use_sge
            and state.get("scenes", "cluttered") == scenes and state.get("start") == (start or None)):
        print(f"ignoring {state_path}: it was written by another recipe", file=sys.stderr)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    print(f"resuming {state_path} after epoch {state['epoch']}", file=sys.stderr)
    return int(state["epoch"]), float(state["seconds"]), float(state.get("acc", "nan")), float(state.get("loss", "nan"))


def train_lockstep(recipe: Recipe, variants: list[bool], config: ModelConfig, device: torch.device,
                   state_paths: list[Path], workers: int, root: str | None, resume: bool = True,
                   max_steps: int | None = None, scenes: str = "cluttered",
                   scene_config: SceneConfig | None = None,
                   inits: list[Path | None] | None = None) -> list[TrainResult]:
    """Train one model per entry of ``variants`` (use_sge flags) on the very same batches.

    Each model is initialised exactly as if trained alone (the seed is reset before each is built), or
    from the weights of ``inits[k]`` when given, and has its own optimizer and resumable state file; the
    scenes are generated once per batch and fed to every model in turn, so an SGE model and its plain twin
    trained together differ only by SGE. Training resumes from the latest epoch that every state file has
    reached.
    """
    models, optimizers = [], []
    inits = inits or [None] * len(variants)
    for use_sge, init in zip(variants, inits):
        seed_everything(recipe.seed)
        model = build_model(DEMO_ARCH, config, use_sge=use_sge)[0]
        if init is not None:
            load_strict(model, read_checkpoint(init).state_dict, init, DEMO_ARCH)
        model = model.to(device)
        models.append(model)
        optimizers.append(torch.optim.SGD(param_groups(model, recipe.weight_decay, recipe.sge_lr_mult),
                                          lr=recipe.lr, momentum=recipe.momentum, nesterov=True))
    names = ["sge" if v else "plain" for v in variants]
    start_epoch, seconds = 0, [0.0] * len(variants)
    acc, mean_loss = [float("nan")] * len(variants), [float("nan")] * len(variants)
    starts = [({"scene_config": asdict(scene_config)} if scene_config is not None else {})
              | ({"init": str(init)} if init is not None else {}) for init in inits]
    if resume:
        states = [_resume(path, recipe, v, scenes, m, o, start)
                  for path, v, m, o, start in zip(state_paths, variants, models, optimizers, starts)]
        if all(states) and len({s[0] for s in states}) == 1:
            start_epoch = states[0][0]
            seconds, acc, mean_loss = ([s[k] for s in states] for k in (1, 2, 3))
        elif any(states):  # the variants stopped at different epochs: start them all afresh, together
            print("the saved states disagree on the epoch: training every variant afresh", file=sys.stderr)
            return train_lockstep(recipe, variants, config, device, state_paths, workers, root, False,
                                  max_steps, scenes, scene_config, inits)
    base = training_scenes(scenes, recipe.seed + TRAIN_SEED_OFFSET, recipe.samples_per_epoch, root, scene_config)
    size = None if scenes == "cluttered" else recipe.input_size  # randomised canvases are resized to the input
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    for epoch in range(start_epoch, recipe.epochs):
        loader = torch.utils.data.DataLoader(
            TorchCluttered(base, config.mean, config.std, start=epoch * recipe.samples_per_epoch, size=size),
            batch_size=recipe.batch_size, shuffle=False, drop_last=True, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=False)
        for model in models:
            model.train()
        correct, total, loss_sum = [0] * len(models), 0, [0.0] * len(models)
        bar = tqdm(loader, desc=f"{'+'.join(names)} epoch {epoch + 1}/{recipe.epochs}", leave=False,
                   dynamic_ncols=True)
        for i, (x, y) in enumerate(bar):
            if max_steps is not None and i >= max_steps:
                break
            step = epoch * recipe.steps_per_epoch + i
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            scored = i % 20 == 0 or i == len(loader) - 1
            total += len(y) if scored else 0
            for k, (model, optimizer) in enumerate(zip(models, optimizers)):
                t0 = time.perf_counter()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, recipe) * group["lr_mult"]
                logits = model(x)
                loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scored:
                    correct[k] += int((logits.argmax(1) == y).sum())
                    loss_sum[k] += float(loss.detach()) * len(y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds[k] += time.perf_counter() - t0  # each model's own compute; scene generation not counted
            if scored:
                bar.set_postfix({f"{n} acc": f"{c / total:.3f}" for n, c in zip(names, correct)})
        acc = [c / max(1, total) for c in correct]
        mean_loss = [s / max(1, total) for s in loss_sum]
        for k, name in enumerate(names):
            print(f"{name} epoch {epoch + 1}/{recipe.epochs}: loss {mean_loss[k]:.3f}, train acc {acc[k]:.3f}, "
                  f"{seconds[k]:.0f} s of compute so far", file=sys.stderr, flush=True)
        if max_steps is not None:
            break
        for k, path in enumerate(state_paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"model": models[k].state_dict(), "optimizer": optimizers[k].state_dict(),
                        "epoch": epoch + 1, "seconds": seconds[k], "recipe": asdict(recipe),
                        "use_sge": variants[k], "scenes": scenes, "acc": acc[k], "loss": mean_loss[k],
                        "torch_rng": torch.get_rng_state(), "start": starts[k] or None}, tmp)
            tmp.replace(path)
    return [TrainResult(m.cpu().eval(), config, s, a, lo) for m, s, a, lo in zip(models, seconds, acc, mean_loss)]


def train_one(recipe: Recipe, use_sge: bool, config: ModelConfig, device: torch.device, state_path: Path,
              workers: int, root: str | None, resume: bool = True, max_steps: int | None = None,
              scenes: str = "cluttered") -> TrainResult:
    """Train one variant with the recipe; resumes from ``state_path`` when it holds a matching state."""
    return train_lockstep(recipe, [use_sge], config, device, [state_path], workers, root, resume, max_steps,
                          scenes)[0]


def recipe_metadata(recipe: Recipe, result: TrainResult, use_sge: bool, device: torch.device,
                    scenes: str = "cluttered", scene_config: SceneConfig | None = None,
                    init: Path | None = None) -> dict:
    data = ({"clutter": asdict(ClutterConfig()), "data": "Cluttered Fashion-MNIST (train split)"}
            if scenes == "cluttered" else
            {"scenes": scenes, "scene_config": asdict(scene_config or SceneConfig()),
             "data": "randomised Fashion-MNIST scenes (train split, train background photos)"})
    if init is not None:
        data["init"] = init.name  # continued from these weights
        data["earlier"] = earlier_training(init)
    return {
        "recipe": {**asdict(recipe),
                   "optimizer": "SGD nesterov, no weight decay on BN/SGE/bias; SGE weight/bias at lr x sge_lr_mult",
                   "schedule": "linear warm-up then cosine to 0", **data},
        "use_sge": use_sge,
        "training": {"seconds": round(result.seconds, 1), "device": describe_device(device),
                     "torch": torch.__version__, "python": platform.python_version(),
                     "last_epoch_train_accuracy": round(result.last_epoch_accuracy, 4),
                     "last_epoch_train_loss": round(result.last_epoch_loss, 4)},
        "data_origin": "Fashion-MNIST (Zalando Research, MIT licence), Debian package dataset-fashion-mnist",
    }


def earlier_training(init: Path) -> dict:
    """What made the weights a run continues from: their recipe and training record (with any history of
    their own). Kept in the new checkpoint, so that history survives when it replaces the file it started
    from."""
    earlier = read_metadata(init)
    return {"file": init.name, **{key: earlier[key] for key in ("recipe", "training") if key in earlier}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Recipe()
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--samples-per-epoch", type=int, default=d.samples_per_epoch)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--sge-lr-mult", type=float, default=d.sge_lr_mult,
                   help="learning-rate multiplier for SGE's weight/bias")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, mps")
    p.add_argument("--workers", type=int, default=None, help="data loader processes (default: by device)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--widths", default=None, help="override the demo widths, e.g. 24,48,96 (experiments)")
    p.add_argument("--groups", type=int, default=None, help="override the demo SGE group count (experiments)")
    p.add_argument("--which", choices=("sge", "plain", "both"), default="both")
    p.add_argument("--scenes", choices=SCENES, default="cluttered",
                   help="training scenes: cluttered (the shipped model's Cluttered Fashion-MNIST) or wild (randomised, "
                        "see data.SceneConfig; the candidate in the model card used --epochs 4 --samples-per-epoch "
                        "21120 --warmup-steps 100)")
    p.add_argument("--plain", action="store_true", help="train only the plain twin (same as --which plain)")
    p.add_argument("--out-dir", type=Path, default=Path("runs/demo"), help="resumable training state")
    p.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="where the SGE model is written")
    p.add_argument("--plain-checkpoint", type=Path, default=PLAIN_CHECKPOINT)
    p.add_argument("--data-root", default=None, help="folder of the Fashion-MNIST IDX .gz files")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if a state exists")
    p.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                   help="continue training the SGE model from these weights (keeping their input normalisation)")
    p.add_argument("--init-plain", type=Path, default=None, metavar="CHECKPOINT",
                   help="continue training the plain twin from these weights")
    p.add_argument("--item-frac", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="item side as a fraction of the canvas in the randomised scenes (default 0.35 0.85)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps of one epoch and write nothing (throughput check)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = pick_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 1)
        recipe = Recipe(epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size,
                        lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
                        sge_lr_mult=args.sge_lr_mult,
                        label_smoothing=args.label_smoothing, seed=args.seed)
        which = "plain" if args.plain else args.which
        if args.item_frac is not None and args.scenes != "wild":
            raise SGEVizError("--item-frac changes the randomised scenes: use it with --scenes wild")
        if which == "both" and (args.init is None) != (args.init_plain is None):
            raise SGEVizError("--which both continues both models: give --init and --init-plain, or train one "
                              "model with --which sge / --which plain")
        scene_config = SceneConfig(item_frac=tuple(args.item_frac)) if args.item_frac is not None else None
        arch_kwargs = dict(DEMO_KWARGS)
        if args.widths:
            arch_kwargs["widths"] = [int(v) for v in args.widths.split(",")]
        if args.groups:
            arch_kwargs["groups"] = args.groups
        scene_count = recipe.epochs * recipe.samples_per_epoch
        init = args.init or args.init_plain
        if init is not None:  # keep the input normalisation the weights were trained with
            start = read_checkpoint(init)
            mean, std = start.config.mean, start.config.std
            arch_kwargs = dict(start.config.arch_kwargs)
            earlier = read_metadata(init).get("recipe", {})
            scene_count += int(earlier.get("epochs", 0)) * int(earlier.get("samples_per_epoch", 0))
        else:
            stats_set = training_scenes(args.scenes, args.seed + TRAIN_SEED_OFFSET, 60000, args.data_root)
            mean, std = data_stats(stats_set, size=None if args.scenes == "cluttered" else recipe.input_size)
        config = demo_config(mean, std, recipe.input_size, arch_kwargs, args.scenes, scene_count,
                             scene_config.item_frac if scene_config else None)
        print(f"training on {describe_device(device)}; recipe {json.dumps(asdict(recipe))}", file=sys.stderr)
        variants = [("sge", True), ("plain", False)] if which == "both" else [(which, which == "sge")]
        inits = [args.init if use_sge else args.init_plain for _, use_sge in variants]
        results = train_lockstep(recipe, [v for _, v in variants], config, device,
                                 [args.out_dir / f"{name}.pt" for name, _ in variants], workers, args.data_root,
                                 resume=not args.no_resume, max_steps=args.max_steps, scenes=args.scenes,
                                 scene_config=scene_config, inits=inits)
        for (name, use_sge), result in zip(variants, results):
            if args.max_steps is not None:
                steps = min(args.max_steps, recipe.steps_per_epoch)
                print(f"{name}: {steps} steps of batch {recipe.batch_size} in {result.seconds:.1f} s of compute = "
                      f"{steps * recipe.batch_size / result.seconds:.1f} samples/s; full recipe "
                      f"{recipe.total_steps} steps ~ {result.seconds / steps * recipe.total_steps / 60:.1f} min")
                continue
            path = args.checkpoint if use_sge else args.plain_checkpoint
            save_safetensors(result.model, config, path,
                             recipe_metadata(recipe, result, use_sge, device, args.scenes, scene_config,
                                             args.init if use_sge else args.init_plain))
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) after {result.seconds:.0f} s of training")
    except SGEVizError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
