"""The danie bundle's figure: the eight Synapse organs of a validation phantom, label against prediction, on three
axial slices.

Run after the bundle's default training and its `evaluating` command (see the bundle's docs/README.md), from the
repository root (needs matplotlib: `pip install -e ".[bench]"`):

    python scripts/figure_danie.py [--bundle_root bundles/danie] [--case img0003] [--out <png>]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ct_figure import axial, load_ras, save_figure  # noqa: E402

from attnseg_monai.data import SYNAPSE_ORGANS, btcv_to_synapse8  # noqa: E402

COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#ffff33", "#a65628", "#f781bf")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle_root", default="bundles/danie")
    p.add_argument("--case", default="img0003", help="a validation case (its prediction is in eval/evaluation)")
    p.add_argument("--out", default=None, help="default <bundle_root>/docs/quick_recipe_result.png")
    args = p.parse_args(argv)
    root = Path(args.bundle_root)
    data = root / "data" / "generated" / "synapse"
    ct = load_ras(data / "img" / f"{args.case}.nii.gz", np.float32)
    label = btcv_to_synapse8(load_ras(data / "label" / f"{args.case.replace('img', 'label')}.nii.gz", np.int64))
    pred = load_ras(root / "eval" / "evaluation" / f"{args.case}_seg.nii.gz", np.int64)
    # three slices: where the most organs are present in the label, and a quarter of the volume above and below
    counts = [len(np.unique(label[:, :, z])) for z in range(label.shape[2])]
    mid = int(np.argmax(counts))
    slices = sorted({max(0, mid - label.shape[2] // 6), mid, min(label.shape[2] - 1, mid + label.shape[2] // 6)})

    fig, axes = plt.subplots(2, len(slices), figsize=(4.2 * len(slices), 8.6))
    for col, z in enumerate(slices):
        for row, (volume, name) in enumerate(((label, "label"), (pred, "prediction"))):
            ax = axes[row, col]
            ax.imshow(axial(ct, z), cmap="gray", vmin=-125, vmax=275)
            for k, colour in enumerate(COLOURS, start=1):
                mask = axial(volume == k, z)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
            ax.set_title(f"{args.case} slice {z}: {name}", fontsize=9)
            ax.set_axis_off()
    handles = [plt.Line2D([], [], color=c, lw=2) for c in COLOURS]
    fig.legend(handles, SYNAPSE_ORGANS, loc="lower center", ncol=8, fontsize=8, frameon=False)
    fig.suptitle("danie, quick recipe on the embedded phantoms (validation case; HU window -125..275)", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_figure(fig, args.out, root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
