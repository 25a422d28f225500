"""The demo models' own code: their data set, training and evaluation. It lives in the source checkout,
outside the ``sge_viz`` package: the wheel does not carry it and the runtime never imports it.

    python -m training.train             # train the SGE model and its plain twin
    python -m training.train --scenes wild ...   # the same on the randomised scenes (data.SceneConfig)
    python -m training.evaluate          # measure them and rewrite checkpoints/MODEL_CARD.md
    python -m training.evaluate --shifts # the shift suite (shifts.SHIFTS) -> the card's "Shift suite"
    python -m training.ood               # measure the out-of-domain score, store its parameters in the weights
    python -m training.photos            # regenerate the background photo crops (needs scikit-image)
    python -m training.assets            # regenerate the example images in assets/

Run from the root of a source checkout: the paths below resolve into its checkpoints/ and assets/ folders.
"""
from sge_viz.resources import demo_checkpoint, examples_dir

DEMO_CHECKPOINT = demo_checkpoint()
CHECKPOINT_DIR = DEMO_CHECKPOINT.parent
PLAIN_CHECKPOINT = CHECKPOINT_DIR / "control" / "sge_resnet_demo_plain.safetensors"
MODEL_CARD = CHECKPOINT_DIR / "MODEL_CARD.md"
ASSET_DIR = examples_dir()
