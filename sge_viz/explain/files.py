"""The CLI's folder per image, written atomically (``io.export.atomic_dir``):

    evidence.json   Evidence.to_json()
    cam.npy         the CAM, float32 (S, S) at the model's input crop size, values in [0, 1]
    cam.png         the CAM over the image with its colour bar
    faithfulness.png  the deletion and insertion curves, when they were computed
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .. import viz
from ..io.export import atomic_dir
from ..viz.figures import figure_pixels
from .evidence import Evidence
from .figures import faithfulness_figure
from .pictures import cam_picture


def write_evidence(evidence: Evidence, out_dir: str | Path) -> Path:
    """Write the folder described in the module docstring; it appears only when complete."""
    out_dir = Path(out_dir)
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(evidence.cam, dtype=np.float32))
    with atomic_dir(out_dir) as tmp:
        (tmp / "evidence.json").write_text(json.dumps(evidence.to_json(), indent=1) + "\n", encoding="utf-8")
        (tmp / "cam.npy").write_bytes(buffer.getvalue())
        (tmp / "cam.png").write_bytes(viz.to_png_bytes(cam_picture(evidence)))
        if evidence.faithfulness is not None:
            figure = faithfulness_figure(evidence.faithfulness, evidence.target.label)
            (tmp / "faithfulness.png").write_bytes(viz.to_png_bytes(figure_pixels(figure)))
    return out_dir
