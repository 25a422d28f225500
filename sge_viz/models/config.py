"""The preprocessing and labelling config that travels with a model's weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to feed a model and name its outputs (cf. timm's pretrained_cfg)."""

    arch: str
    num_classes: int  # 0 for a gates-only model (its output is not one row of class scores)
    input_size: int | tuple[int, int]  # side of the square the network sees, or (height, width)
    resize_size: int  # shorter side before the centre crop; 0: the whole image resized to the input size
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per input channel
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] = field(default=(), repr=False)
    # Keyword arguments of the architecture builder (widths, groups, ...), so a
    # checkpoint can rebuild a non-default member of the family.
    arch_kwargs: dict = field(default_factory=dict)
    # The model's domain, shown beside its predictions: one sentence on what it recognises, and the data
    # it was trained on. Empty in a file that predates them: the registry fills in its defaults.
    description: str = ""
    training_data: str = ""
    # The out-of-domain signal: its name ("" = none measured) and the threshold above which an image is
    # flagged (see sge_viz.domain.detector).
    ood_score: str = ""
    ood_threshold: float | None = None
    # Models from the user's code: input channels (1 = grayscale), what the output is ("classify": one row
    # of class scores per image; "gates": anything else, so gates only), module-path patterns of SGE layers
    # that structure detection misses, the Grad-CAM layer, and what the user says the model knows.
    channels: int = 3
    task: str = "classify"
    sge_layers: tuple[str, ...] = ()
    cam_layer: str = ""
    # How the network was built, said wherever results are read (e.g. a checkpoint loaded by key names
    # into a built-in layout: another forward with the same names needs --model-def).
    layout_note: str = ""

    @property
    def height(self) -> int:
        return self.input_size if isinstance(self.input_size, int) else int(self.input_size[0])

    @property
    def width(self) -> int:
        return self.input_size if isinstance(self.input_size, int) else int(self.input_size[1])

    @property
    def size_label(self) -> str:
        """The input size as people write it: "224x224", "256x512" (height x width)."""
        return f"{self.height}x{self.width}"

    @property
    def classifies(self) -> bool:
        """Whether the model gives class scores (predictions, out-of-domain verdicts, Grad-CAM)."""
        return self.task == "classify"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        d["input_size"] = self.input_size if isinstance(self.input_size, int) else list(self.input_size)
        d["sge_layers"] = list(self.sge_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            arch=str(d["arch"]),
            num_classes=int(d["num_classes"]),
            input_size=(int(d["input_size"]) if not isinstance(d["input_size"], list | tuple)
                        else (int(d["input_size"][0]), int(d["input_size"][1]))),
            resize_size=int(d["resize_size"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            class_names=tuple(str(v) for v in d.get("class_names", ())),
            arch_kwargs=dict(d.get("arch_kwargs", {})),
            description=str(d.get("description", "")),
            training_data=str(d.get("training_data", "")),
            ood_score=str(d.get("ood_score", "")),
            ood_threshold=None if d.get("ood_threshold") is None else float(d["ood_threshold"]),
            channels=int(d.get("channels", 3)),
            task=str(d.get("task", "classify")),
            sge_layers=tuple(str(v) for v in d.get("sge_layers", ())),
            cam_layer=str(d.get("cam_layer", "")),
            layout_note=str(d.get("layout_note", "")),
        )

    def domain(self) -> dict:
        """What the model knows, for the page, ``/models`` and ``sge-viz info``: description, training data,
        classes, input size and the out-of-domain signal (None when none was measured)."""
        return {
            "description": self.description, "training_data": self.training_data,
            "num_classes": self.num_classes, "classes": list(self.class_names),
            "input_size": self.input_size, "resize_size": self.resize_size, "task": self.task,
            "channels": self.channels, "layout_note": self.layout_note,
            "ood": ({"score": self.ood_score, "threshold": self.ood_threshold}
                    if self.ood_score and self.ood_threshold is not None else None),
        }

    def class_name(self, index: int) -> str:
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"
