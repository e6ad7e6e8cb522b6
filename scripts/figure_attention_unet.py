"""The attention_unet bundle's figure: a validation phantom with its label and the prediction, and a test phantom
with the prediction and the level-1 attention-gate map.

Run after the bundle's default training, `evaluating` and inference with `save_attention.json` (see the bundle's
docs/README.md), from the repository root:

    python scripts/figure_attention_unet.py [--bundle_root bundles/attention_unet] [--out <png>]

Needs matplotlib (`pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ct_figure import axial, load_ras, save_figure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle_root", default="bundles/attention_unet")
    p.add_argument("--out", default=None, help="default <bundle_root>/docs/quick_recipe_result.png")
    p.add_argument("--val_case", default="pancreas_003")
    p.add_argument("--test_case", default="pancreas_101")
    args = p.parse_args(argv)
    root = Path(args.bundle_root)
    data = root / "data" / "generated" / "pancreas"
    ct = load_ras(data / "imagesTr" / f"{args.val_case}.nii.gz", np.float32)
    label = load_ras(data / "labelsTr" / f"{args.val_case}.nii.gz", np.float32)
    pred = load_ras(root / "eval" / "evaluation" / f"{args.val_case}_seg.nii.gz", np.float32)
    z = int(np.argmax((label == 1).sum(axis=(0, 1))))  # the slice with the most pancreas
    test_ct = load_ras(data / "imagesTs" / f"{args.test_case}.nii.gz", np.float32)
    test_pred = load_ras(root / "eval" / "predictions" / f"{args.test_case}_seg.nii.gz", np.float32)
    gate = load_ras(root / "eval" / "predictions" / f"{args.test_case}_attention_level1.nii.gz", np.float32)
    tz = int(np.argmax((test_pred == 1).sum(axis=(0, 1))))

    window = {"cmap": "gray", "vmin": -100, "vmax": 240}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    axes[0].imshow(axial(ct, z), **window)
    axes[0].contour(axial(label == 1, z), levels=[0.5], colors="lime", linewidths=1.2)
    axes[0].contour(axial(pred == 1, z), levels=[0.5], colors="red", linewidths=1.0)
    axes[0].set_title(f"{args.val_case} (validation), slice {z}: label (green), prediction (red)", fontsize=9)
    axes[1].imshow(axial(test_ct, tz), **window)
    axes[1].contour(axial(test_pred == 1, tz), levels=[0.5], colors="red", linewidths=1.0)
    axes[1].set_title(f"{args.test_case} (test), slice {tz}: prediction", fontsize=9)
    axes[2].imshow(axial(test_ct, tz), **window)
    shown = axes[2].imshow(axial(gate, tz), cmap="inferno", alpha=0.55, vmin=0.0, vmax=float(gate.max()))
    axes[2].set_title("attention gate, level 1 (finest), same slice", fontsize=9)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle("attention_unet, quick recipe on the embedded phantoms (HU window -100..240)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, args.out, root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
