"""``sge-viz examples [DIR]``: copy the shipped example images and the example models of "Your own model"
into DIR (default ``sge-examples``), so every README command runs from any folder.

DIR/ gets the example images with the scenes' item masks, their true classes (``classes.json``) and where
they come from (``README.md``); DIR/own_models/ the example networks (``make_finetuned.py``,
``resnet18_sge.py``, ``unet_sge.py``). A file already in DIR is never overwritten (listed as kept). Exit
status 0, or 1 when DIR cannot be written.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
from pathlib import Path

from ..errors import SGEVizError
from .common import count_of


def register(sub) -> None:
    p = sub.add_parser("examples", help="copy the example images and example models here, to try every command")
    p.add_argument("folder", metavar="DIR", nargs="?", default="sge-examples",
                   help="where to copy them (default sge-examples; created when missing)")


def shipped() -> list[tuple[Path, str]]:
    """(file, where it goes relative to DIR) for every example file the package carries."""
    from ..resources import examples_dir, resource_path

    images = [(p, p.name) for p in sorted(examples_dir().iterdir())
              if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".json", ".md")]
    models = [(p, f"own_models/{p.name}") for p in sorted(resource_path("own_models").glob("*.py"))]
    return images + models


def run(args: argparse.Namespace) -> int:
    out = Path(args.folder)
    copied, kept = 0, []
    try:
        for source, name in shipped():
            target = out / name
            if target.exists():
                if not (target.is_file() and filecmp.cmp(source, target, shallow=False)):
                    kept.append(name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            copied += 1
    except OSError as exc:
        raise SGEVizError(f"cannot write the examples into {out}: {exc}") from exc
    print(f"{count_of(copied, 'file')} copied into {out}/ (example images, their masks and true classes; "
          "own_models/: the example networks of the README's 'Your own model')")
    for name in kept:
        print(f"kept: {out / name} (a different file of that name is already there)")
    print(f"try: sge-viz analyze {out / 'scene_wild_02.png'} --out runs/first")
    return 0
