"""Peak resident memory of 3D CT inference: MONAI's float32 whole-volume stitch against the slab inferer.

A synthetic 512x512x200 float32 volume (the size of an abdominal CT) goes through sliding-window inference with
a cheap network (one 3x3x3 convolution to 9 or 14 classes, so that the stitch, not the network, dominates) and
ends as a uint8 label volume. Each variant runs in a fresh Python process, whose peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is reported together with the RSS after the imports and after
the volume was made:

- ``monai``: ``monai.inferers.SlidingWindowInferer`` (float32 stitch of all classes + count map), then argmax
  to uint8, as a bundle with ``AsDiscreted(argmax=True)`` does;
- ``slab``: :class:`attnseg_monai.inferers.SlabSlidingWindowInferer` with ``output="labels"``;
- ``slab-probabilities``: the same with ``output="probabilities"`` (float16 softmax of every class);
- ``slicewise``: :class:`attnseg_monai.inferers.SliceWiseInferer` with a one-convolution 2D network over the
  axial slices (whole slices, 8 per network call).

The labels of every 3D variant are compared with the ``monai`` variant's (fraction of equal voxels).

Usage (from the repository root)::

    python benchmarks/ct_memory.py                      # 9 and 14 classes, all variants, the table
    python benchmarks/ct_memory.py --classes 14 --variants monai slab --shape 256 256 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["VARIANTS", "main", "run_variant"]

VARIANTS = ("monai", "slab", "slab-probabilities", "slicewise")
GIB = 1024**3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def run_variant(variant: str, classes: int, shape: tuple[int, ...], roi: tuple[int, ...], out: Path) -> dict:
    """Run one variant in this process and return its measurements; the labels are saved to ``out`` (.npy)."""
    import torch
    from monai.inferers import SlidingWindowInferer

    from attnseg_monai.inferers import SlabSlidingWindowInferer, SliceWiseInferer

    rss_imports = _rss_bytes()
    volume = torch.randn((1, 1, *shape), generator=torch.Generator().manual_seed(0))
    rss_volume = _rss_bytes()
    torch.manual_seed(1)
    settings = {"sw_batch_size": 2, "overlap": 0.25, "mode": "gaussian"}
    start = time.perf_counter()
    with torch.no_grad():
        if variant == "slicewise":
            net = torch.nn.Conv2d(1, classes, 3, padding=1).eval()
            labels = SliceWiseInferer(None, sw_batch_size=8)(volume, net)
        else:
            net = torch.nn.Conv3d(1, classes, 3, padding=1).eval()
            if variant == "monai":
                logits = SlidingWindowInferer(roi, **settings)(volume, net)
                labels = logits.argmax(1, keepdim=True).to(torch.uint8)
                del logits
            elif variant == "slab":
                labels = SlabSlidingWindowInferer(roi, **settings)(volume, net)
            elif variant == "slab-probabilities":
                probs = SlabSlidingWindowInferer(roi, output="probabilities", **settings)(volume, net)
                labels = probs.argmax(1, keepdim=True).to(torch.uint8)  # float16 ties may differ from float32
                del probs
            else:
                raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    seconds = time.perf_counter() - start
    peak = _peak_rss_bytes()
    np.save(out, labels.numpy())
    return {
        "variant": variant,
        "classes": classes,
        "peak_rss": peak,
        "rss_imports": rss_imports,
        "rss_volume": rss_volume,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
    }


def _child(args: argparse.Namespace) -> None:
    result = run_variant(args.child, args.child_classes, tuple(args.shape), tuple(args.roi), Path(args.labels))
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every variant in a fresh subprocess, write the table to stdout and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[9, 14])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 200])
    parser.add_argument("--roi", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--child-classes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for classes in args.classes:
            reference = None
            for variant in args.variants:
                labels = Path(tmp) / f"{variant}-{classes}.npy"
                command = [sys.executable, __file__, "--child", variant, "--child-classes", str(classes)]
                command += ["--shape", *map(str, args.shape), "--roi", *map(str, args.roi), "--labels", str(labels)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode != 0 or not lines:
                    raise RuntimeError(f"{variant} ({classes} classes) failed:\n{done.stderr[-3000:]}")
                row = json.loads(lines[-1][len("RESULT ") :])
                array = np.load(labels, mmap_mode="r")
                if variant == "monai":
                    reference = labels
                comparable = reference is not None and variant != "slicewise"  # the 2D network is another network
                row["agreement"] = float((array == np.load(reference, mmap_mode="r")).mean()) if comparable else None
                rows.append(row)
    shape = "x".join(map(str, args.shape))
    out = sys.stdout
    out.write(f"volume {shape} float32, roi {tuple(args.roi)}, overlap 0.25, gaussian, sw_batch_size 2\n\n")
    out.write("| variant | classes | peak RSS (GiB) | after imports | after volume | peak - volume | time (s) |")
    out.write(" labels = monai |\n|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        agreement = "-" if r["agreement"] is None else f"{100 * r['agreement']:.4f} %"
        out.write(
            f"| {r['variant']} | {r['classes']} | {r['peak_rss'] / GIB:.2f} | {r['rss_imports'] / GIB:.2f} | "
            f"{r['rss_volume'] / GIB:.2f} | {(r['peak_rss'] - r['rss_volume']) / GIB:.2f} | {r['seconds']:.1f} | "
            f"{agreement} |\n"
        )
    return rows


if __name__ == "__main__":
    main()
