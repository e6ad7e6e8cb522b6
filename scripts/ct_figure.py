"""What the CT figure scripts (figure_attention_unet.py, figure_danie.py) share: RAS loading, the radiological
axial view, and writing the figure beside the bundle's docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np


def load_ras(path: Path, dtype: Any = None) -> np.ndarray:
    """The NIfTI volume at ``path`` reoriented to RAS (the phantoms are stored LPS/oblique)."""
    return np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj, dtype=dtype)


def axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Axial slice of a RAS volume as radiologists view it: anterior at the top, the patient's right on the left."""
    return np.rot90(volume[:, :, z])[:, ::-1]


def save_figure(fig: Any, out: str | None, bundle_root: Path) -> Path:
    """Write ``fig`` to ``out`` (default ``<bundle_root>/docs/quick_recipe_result.png``) and say where."""
    path = Path(out) if out else bundle_root / "docs" / "quick_recipe_result.png"
    fig.savefig(path, dpi=100)
    print(f"written: {path}")
    return path
