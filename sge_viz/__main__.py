"""``python -m sge_viz``: the same as the ``sge-viz`` command."""
import sys

from .cli import main

sys.exit(main())
