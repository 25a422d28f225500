"""SGE attention explorer: the Gradio app (also what a Hugging Face Space runs).

    python app.py                      # the shipped default model (sge_resnet_demo_scenes), http://127.0.0.1:7860
    python app.py --share              # plus a public *.gradio.live link
    python app.py --checkpoint checkpoints/sge_resnet50.pth.tar --device cuda
    python app.py --random-weights sge_resnet50   # an untrained ImageNet network, e.g. for timing

The same server starts from an installed package with ``sge-viz serve`` and the same flags.
"""
import sys

from sge_viz.app.server import main

if __name__ == "__main__":
    sys.exit(main())
