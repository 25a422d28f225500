"""One table of architectures: it builds models, names the architecture of a checkpoint, and gives defaults.

Each entry carries the layout (block type, blocks per stage, widths, stem) and
the default config (input size, mean/std, class names), in the manner of
timm's ``default_cfgs``. Building, inferring an architecture from a state_dict
and preprocessing defaults all read this one table.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from .config import ModelConfig
from .imagenet import imagenet_class_names
from .resnet import BasicBlock, Bottleneck, SGEResNet

BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}

# The shipped demo model: a narrow two-block-per-stage SGE-ResNet for 64x64
# Cluttered Fashion-MNIST canvases. Deepest gate map: 64 / 2 / 2 / 2 = 8x8.
DEMO_ARCH = "sge_resnet_demo"
DEMO_KWARGS: dict = dict(block="basic", layers=[2, 2, 2], widths=[32, 64, 128], groups=8,
                         stem="small", stem_stride=2)


# What the demo model knows, filled into its config when its file does not say (the shipped file predates
# these fields). Its out-of-domain threshold travels with its weights (metadata ``sge_viz.ood``, measured
# by ``python -m training.ood`` from a source checkout).
DEMO_DOMAIN: dict = dict(
    description=("Knows only its own generator: one clothing item among faint clutter on a dark textured 64x64 "
                 "canvas (10 Fashion-MNIST classes). Shop-style pictures, photo backgrounds and photographs are "
                 "outside it (the default model, sge_resnet_demo_scenes, holds up on the first two); on anything "
                 "else its classes and gates mean little."),
    training_data=("Cluttered Fashion-MNIST: one Fashion-MNIST item (32-46 px, tinted) pasted over textured "
                   "noise and 2-5 clutter patches, 240k generated training scenes"),
)
IMAGENET_DOMAIN: dict = dict(
    description="Recognises 1000 ImageNet object classes in natural photographs (224x224 centre crop).",
    training_data="ImageNet-1k (ILSVRC 2012) training set, 1.28M photographs",
)


def with_domain(config: ModelConfig) -> ModelConfig:
    """``config`` with an empty description / training data filled from the registry's defaults for its
    architecture (the demo model, or the ImageNet family when it has 1000 classes)."""
    if config.description and config.training_data:
        return config
    if config.arch == DEMO_ARCH:
        defaults = DEMO_DOMAIN
    elif config.arch in ARCHS and config.num_classes == 1000:
        defaults = IMAGENET_DOMAIN
    else:
        return config
    return dataclasses.replace(config, description=config.description or defaults["description"],
                               training_data=config.training_data or defaults["training_data"])


def untrained(config: ModelConfig) -> ModelConfig:
    """``config`` of a network with random weights: its domain says it knows nothing."""
    return dataclasses.replace(config, description="Untrained (random weights): its predictions and gates mean "
                               "nothing; use it to time the network or to see SGE's initial gates.",
                               training_data="nothing (random initialisation)", ood_score="", ood_threshold=None)


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: its layout and whether it has ImageNet defaults."""

    name: str
    block: str  # a key of BLOCKS; the rest of the layout is the official one (7x7 stem, widths 64..512, 64 groups)
    layers: tuple[int, ...]

    def default_config(self) -> ModelConfig:
        """The preprocessing and labelling defaults of the official ImageNet weights."""
        return ModelConfig(arch=self.name, num_classes=1000, input_size=224, resize_size=256,
                           class_names=imagenet_class_names(), **IMAGENET_DOMAIN)

    def config_for(self, state_dict: dict[str, torch.Tensor]) -> ModelConfig:
        """The config of a file of this architecture that does not carry one, read from its shapes: classes
        from the head (``fc.weight``; none: a backbone, gates only), groups from the SGE parameters. Only
        1000 classes get ImageNet's names and domain; a fine-tuned head has no names and no known domain."""
        fc = state_dict.get("fc.weight")
        sge = next((v for k, v in state_dict.items() if k.endswith(".sge.weight")), None)
        groups = int(sge.numel()) if sge is not None else 64
        classes = int(fc.shape[0]) if fc is not None and fc.dim() == 2 else 0
        imagenet = classes == 1000
        return ModelConfig(arch=self.name, num_classes=classes, input_size=224, resize_size=256,
                           class_names=imagenet_class_names() if imagenet else (),
                           arch_kwargs={"groups": groups} if groups != 64 else {},
                           task="classify" if classes else "gates", layout_note=LAYOUT_NOTE,
                           **(IMAGENET_DOMAIN if imagenet else {}))


# Said wherever results of a file loaded by key names are read: the keys cannot tell where SGE sits.
LAYOUT_NOTE = ("Built-in layout, chosen from the file's key names: torchvision's ResNet with SGE on each block's "
               "residual branch after its last BatchNorm, before the addition (as in the official code). A network "
               "with the same key names but another forward (e.g. SGE after the addition) needs --model-def.")


ARCHS: dict[str, ArchSpec] = {spec.name: spec for spec in (
    ArchSpec("sge_resnet18", "basic", (2, 2, 2, 2)),
    ArchSpec("sge_resnet34", "basic", (3, 4, 6, 3)),
    ArchSpec("sge_resnet50", "bottleneck", (3, 4, 6, 3)),
    ArchSpec("sge_resnet101", "bottleneck", (3, 4, 23, 3)),
    ArchSpec("sge_resnet152", "bottleneck", (3, 8, 36, 3)),
)}

_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.")


def available_models() -> list[str]:
    """Every name ``build_model`` and ``create_model`` accept: the ImageNet family, then the demo model."""
    return sorted(ARCHS) + [DEMO_ARCH]


def build_custom(block: str, layers: list[int], widths: list[int], groups: int, stem: str = "small",
                 stem_stride: int = 1, num_classes: int = 10, use_sge: bool = True) -> SGEResNet:
    """Any member of the family from plain keyword values (what a checkpoint's metadata holds).

    Raises ValueError for an unknown block or stem.
    """
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; known: {', '.join(BLOCKS)}")
    return SGEResNet(BLOCKS[block], list(layers), num_classes=num_classes, widths=tuple(widths), groups=groups,
                     stem=stem, stem_stride=stem_stride, use_sge=use_sge)


def build_model(arch: str, config: ModelConfig | None = None, use_sge: bool = True) -> tuple[SGEResNet, ModelConfig]:
    """A freshly initialised model and its config.

    ``arch``: a registered name, or any name when ``config.arch_kwargs`` describes the layout (the demo
    model and other custom members). ``config`` overrides the default config. ``use_sge=False`` builds the
    plain twin (identity instead of SGE). Raises KeyError for an unknown name without a layout.
    """
    if arch in ARCHS:
        spec = ARCHS[arch]
        cfg = with_domain(config or spec.default_config())
        model = SGEResNet(BLOCKS[spec.block], list(spec.layers), num_classes=max(cfg.num_classes, 1),
                          groups=int(cfg.arch_kwargs.get("groups", 64)), use_sge=use_sge)
        if not cfg.classifies:  # a backbone without its head: the pooled features come out, gates only
            model.fc = nn.Identity()
        return model, cfg
    if config is None or not config.arch_kwargs:
        raise KeyError(arch)
    return build_custom(**config.arch_kwargs, num_classes=config.num_classes, use_sge=use_sge), with_domain(config)


@cache
def _layouts() -> dict[tuple[str, tuple[int, ...]], str]:
    return {(spec.block, spec.layers): spec.name for spec in ARCHS.values()}


def infer_arch(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The registered architecture whose layout these keys and shapes match, or None.

    Blocks per stage come from the ``layerX.Y.`` keys, the block type from the presence of
    ``conv3`` (bottleneck), and the ImageNet stem from ``conv1.weight`` being (64, 3, 7, 7).
    """
    blocks: dict[int, set[int]] = {}
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    layout = tuple(len(blocks[i]) for i in sorted(blocks))
    block = "bottleneck" if any(k.endswith(".conv3.weight") for k in state_dict) else "basic"
    arch = _layouts().get((block, layout))
    conv1 = state_dict.get("conv1.weight")
    if arch and conv1 is not None and tuple(conv1.shape) == (64, 3, 7, 7):
        return arch
    return None
