"""Is our OpenVINO engine as fast as OpenVINO driven directly? Interleaved rounds on one network, so that the drift of
a shared machine falls on every variant alike (``bench_speed.py`` times each variant's repeats back to back).

Three variants per round, same network (random weights as in ``bench_speed.py``), same input:

- ``shipped``: the fast path as shipped (``FastSlidingWindowInferer`` / ``with_fast_path(...)``, engine ``auto``);
- ``direct``: the same window grid with the plain float32 inferer calling OpenVINO driven directly
  (``bench_engines.DirectEngine``: ``torch.onnx.export``, compiled with OpenVINO's default hints);
- ``engine``: the same plain inferer calling our engine (``prepare_engine(..., "openvino")``) directly.

Usage (from the repository root, an idle machine)::

    python benchmarks/engine_parity.py focalattentionunet --dims 3 --volume 320 320 128 --rounds 3
    python benchmarks/engine_parity.py hannet --dims 2 --rounds 3        # the 1720x1280 slide
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_speed  # noqa: E402 - this folder's benchmark: its network factories and randomisation
from bench_engines import DirectEngine, fitted_grid  # noqa: E402


def parity(name: str, dims: int, size: list[int], rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each variant (see the module docstring)."""
    from attnseg_monai.inferers import FastSlidingWindowInferer, with_fast_path
    from attnseg_monai.precision import prepare_engine, resolve_policy

    if dims == 2:
        net = bench_speed._randomise(bench_speed.networks_2d(3, 2)[name]())
        image = torch.rand(1, 3, *size)
        defaults = bench_speed.parse_args([])  # the benchmark's own window grid (--fast-roi, --fast-overlap)
        fitted = fitted_grid(defaults.fast_roi, defaults.fast_overlap, int(net.size_divisible_by))
        shipped = FastSlidingWindowInferer(**fitted)
        plain = FastSlidingWindowInferer(precision="fp32", engine="torch", **fitted)
        window = (1, 3, *shipped._grid(image, net)[0])
    else:
        factory, kind, roi, _ = bench_speed.networks_3d(False)[name]
        net = bench_speed._randomise(factory())
        image = torch.rand(1, 1, *size)
        plain, window, _ = bench_speed.inferer_3d(kind, roi, tuple(size))
        shipped = with_fast_path(plain, precision="auto", engine="auto")
    variants = {
        "shipped": (shipped, net),
        "direct": (plain, DirectEngine("openvino", net, window)),
        "engine": (plain, prepare_engine(net, resolve_policy("auto", "cpu"), "openvino")),
    }
    seconds: dict[str, list[float]] = {key: [] for key in variants}
    with torch.inference_mode():
        for inferer, runner in variants.values():  # warm-up: conversion, compilation of every shape the image needs
            inferer(image, runner)
        for _ in range(rounds):
            for key, (inferer, runner) in variants.items():
                start = time.perf_counter()
                inferer(image, runner)
                seconds[key].append(time.perf_counter() - start)
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("network", help="a 2D name of bench_speed.networks_2d or a 3D case of bench_speed.networks_3d")
    p.add_argument("--dims", type=int, choices=(2, 3), default=2)
    p.add_argument("--slide", nargs=2, type=int, default=[1720, 1280])
    p.add_argument("--volume", nargs=3, type=int, default=[320, 320, 128])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    os.environ.setdefault("ATTNSEG_OPENVINO_CACHE", tempfile.mkdtemp(prefix="engine_parity_"))
    size = args.slide if args.dims == 2 else args.volume
    seconds = parity(args.network, args.dims, size, args.rounds)
    for key, values in seconds.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{args.network} {args.dims}D {'x'.join(map(str, size))} {key:8s} median {np.median(values):.3f} s ({runs})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
