"""The demo model's own code: its data set, training and evaluation. The runtime never imports this package.

    python -m sge_viz.demo.train        # train the SGE model and its plain twin
    python -m sge_viz.demo.train --scenes wild ...   # the same on the randomised scenes (data.SceneConfig)
    python -m sge_viz.demo.evaluate     # measure them and rewrite checkpoints/MODEL_CARD.md
    python -m sge_viz.demo.evaluate --shifts   # the shift suite (shifts.SHIFTS) -> the card's "Shift suite"
    python -m sge_viz.demo.photos       # regenerate the background photo crops (needs scikit-image)
    python -m sge_viz.demo.assets       # regenerate the example images in assets/

Run from a source checkout: the paths below resolve into its checkpoints/ and assets/ folders.
"""
from ..resources import demo_checkpoint, examples_dir

DEMO_CHECKPOINT = demo_checkpoint()
CHECKPOINT_DIR = DEMO_CHECKPOINT.parent
PLAIN_CHECKPOINT = CHECKPOINT_DIR / "control" / "sge_resnet_demo_plain.safetensors"
MODEL_CARD = CHECKPOINT_DIR / "MODEL_CARD.md"
ASSET_DIR = examples_dir()
