"""Inference and training speed, side by side, in one process: MONAI's default float32 path against the fast path.

What one run measures (see ``docs/benchmarks.md`` for the method and the recorded figures):

1. the machine: CPU flags, threads, load average, and its own matmul peak (a 2048^3 float32 and bfloat16 matmul,
   best of several, ``2 N^3`` FLOP each);
2. every network of the collection and MONAI's references on a 1720x1280 RGB slide: MONAI's default
   ``SlidingWindowInferer(roi_size=256, overlap=0.25)`` in float32 (the baseline) against
   :class:`attnseg_monai.inferers.FastSlidingWindowInferer` (``precision="auto"``, windows of at most 512 fitted to
   the slide, overlap >= 64 px, Gaussian blending); seconds, megapixels/s, effective GFLOP/s (FLOPs of one forward
   over the slide, counted by ``describe_network``, divided by the time), its share of the measured peak, and the
   peak resident memory of each run;
3. 3D: a 512x512x200 volume through the slab-wise inferer (``with_fast_path(SlabSlidingWindowInferer)``, labels out)
   and DANIE slice by slice (``SliceWiseInferer``): seconds, megavoxels/s, GFLOP/s, peak resident memory;
4. accuracy: a trained hannet (``--checkpoint``) on the embedded real nuclei sample, MONAI's float32 path against the
   bundle's fast inferer; Dice of the two argmax outputs per image; and the trained 3D bundles (``--ct-bundles``:
   attention_unet, danie) on their CT phantoms through ``BundlePredictor``, the default path (precision and engine
   ``auto``) against float32 on torch, voxels equal and Dice (:mod:`bench_ct_accuracy`);
5. training: one step of each bundle's default recipe (network, loss, optimiser, batch and patch size parsed from its
   ``train.json``) in float32 and under bf16 autocast (:class:`attnseg_monai.precision.AutocastIteration`'s context),
   and the forward pass alone (the part an inference engine such as OpenVINO could run at all);
6. engines, in 2D and 3D, through the same fitted window grid: the fast path as shipped (``engine="auto"``: OpenVINO
   when installed), the fast path on torch, and OpenVINO and onnxruntime driven directly on the network's ONNX
   export (:mod:`bench_engines`); the converted-model cache starts empty, so first-window times include conversion;
7. GPU (``--gpu-device``, default ``cuda``): MONAI float32, the fast path, ``torch.compile`` and TensorRT rows when
   installed; skipped with a message on a machine without CUDA.

Peak resident memory is the kernel's high-water mark (``VmHWM``), reset before each run through
``/proc/self/clear_refs``; it includes what the process already holds (reported too, as ``rss_before``).

Usage (from the repository root; an idle machine; about 30 minutes on 2 cores)::

    python benchmarks/bench_speed.py --write-docs          # full run, JSON + table + plots, docs section refreshed
    python benchmarks/bench_speed.py --quick               # seconds: tiny sizes and two networks, checks the code
    python benchmarks/bench_speed.py --networks hannet monai.basicunetplusplus --skip 3d training
    python benchmarks/bench_speed.py --from-json benchmarks/results/bench_speed.json --write-docs   # redo the docs
    python benchmarks/bench_speed.py --networks hannet --repeats 3 --skip 3d accuracy training gpu --out /tmp/a
    python benchmarks/bench_speed.py --from-json /tmp/a/bench_speed.json /tmp/b/bench_speed.json --write-docs

Timed runs follow a warm-up window (conversion, compilation, caches); ``--repeats N`` times each 2D/3D variant N times
and reports the median with every run's seconds. Sections measured in separate runs merge with ``--from-json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ct_accuracy import CT_BUNDLES, bench_ct_accuracy, ct_markdown  # noqa: E402 - this folder's helper
from bench_engines import (  # noqa: E402 - this folder's helper module, found next to the script
    ENGINE_VARIANTS,
    GPU_VARIANTS,
    PEAK_OF,
    DirectEngine,
    bench_gpu,
    engine_of,
    fitted_grid,
    gpu_markdown,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
FIGURES = ROOT / "docs" / "figures"
BEGIN, END = "<!-- bench_speed:begin -->", "<!-- bench_speed:end -->"
SECTIONS = ("2d", "3d", "accuracy", "training", "gpu")
BUNDLES = ("hannet", "mcsa_unet", "focal_attn_unet", "attention_unet", "danie")
ALL_3D = (
    "hannet",
    "mcsaunet",
    "focalattentionunet",
    "gridattentionunet",
    "danie3d",
    "danie",
    "monai.basicunet",
    "monai.basicunetplusplus",
    "monai.attentionunet",
    "monai.swinunetr",
)


# ---------------------------------------------------------------------------------------------------- measurement
def _vm(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes (0 where unavailable)."""
    try:
        match = re.search(rf"^{key}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return 0
    return int(match.group(1)) * 1024 if match else 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` once: seconds, peak resident memory during the run and the resident memory before it."""
    import gc

    gc.collect()
    before = _vm("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = _vm("VmHWM")
    return {
        "seconds": seconds,
        "peak_rss_gb": peak / 1e9 if reset else None,
        "rss_before_gb": before / 1e9,
        "result": result,
    }


def measure_median(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """:func:`measure` ``repeats`` times: the median seconds (``runs``: every run's), the largest peak memory and the
    result of the last run."""
    results = [measure(fn) for _ in range(max(1, int(repeats)))]
    peaks = [r["peak_rss_gb"] for r in results if r["peak_rss_gb"] is not None]
    return {
        **results[-1],
        "seconds": float(np.median([r["seconds"] for r in results])),
        "runs": [r["seconds"] for r in results],
        "peak_rss_gb": max(peaks) if peaks else None,
        "rss_before_gb": results[0]["rss_before_gb"],
    }


def matmul_peak(dtype: torch.dtype, n: int, repeats: int) -> tuple[float, float]:
    """(median, best) GFLOP/s of ``repeats`` ``n x n`` matmuls in ``dtype``, after two warm-up products.

    The median is the sustained peak the networks are compared with: single timings swing (on the 2-core AMX
    machine one best-of-8 run reported 1,563 GFLOP/s bf16 where the medians of repeated runs were 550-620).
    """
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    flop = 2 * n**3 / 1e9
    return flop / float(np.median(times)), flop / min(times)


def _peaks(n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """:func:`matmul_peak` in float32 and bfloat16."""
    return {"fp32": matmul_peak(torch.float32, n, repeats), "bf16": matmul_peak(torch.bfloat16, n, repeats)}


# ---------------------------------------------------------------------------------------------------- networks
def _divisible_by(factory: Callable[[], nn.Module], divisor: int) -> Callable[[], nn.Module]:
    """``factory`` whose network also states ``size_divisible_by`` (MONAI's networks do not; the fitted window grid
    of the fast path reads it)."""

    def build() -> nn.Module:
        net = factory()
        net.size_divisible_by = divisor
        return net

    return build


def networks_2d(in_channels: int, out_channels: int) -> dict[str, Callable[[], nn.Module]]:
    """Name -> factory of every 2D network compared (the collection at default settings, MONAI's references)."""
    from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus, SwinUNETR

    from attnseg_monai.networks import get_network

    def ours(name: str) -> Callable[[], nn.Module]:
        return lambda: get_network(name, spatial_dims=2, in_channels=in_channels, out_channels=out_channels)

    return {
        "hannet": ours("hannet"),
        "mcsaunet": ours("mcsaunet"),
        "focalattentionunet": ours("focalattentionunet"),
        "gridattentionunet": ours("gridattentionunet"),
        "danie": ours("danie"),
        "monai.basicunet": _divisible_by(lambda: BasicUNet(2, in_channels, out_channels), 16),
        "monai.basicunetplusplus": _divisible_by(lambda: BasicUNetPlusPlus(2, in_channels, out_channels), 16),
        "monai.attentionunet": _divisible_by(
            lambda: AttentionUnet(2, in_channels, out_channels, (32, 64, 128, 256, 512), (2, 2, 2, 2)), 16
        ),
        "monai.swinunetr": _divisible_by(
            lambda: SwinUNETR(in_channels=in_channels, out_channels=out_channels, spatial_dims=2, feature_size=24), 32
        ),
    }


#: 3D widths: the attention_unet bundle's quick recipe width (8..128) for the networks whose 2D defaults are
#: heavy (their 3D convolutions cost 3x per voxel what 2D ones cost per pixel), the paper width for the gated U-Net
#: (its bundle's paper recipe), and the references at comparable widths
_FEATURES_3D = (8, 16, 32, 64, 128)


def networks_3d(
    quick: bool, window3d: list[int] | None = None
) -> dict[str, tuple[Callable[[], nn.Module], str, list[int] | None, int]]:
    """Name -> (factory, inferer kind, window, classes) of the 3D cases: every network of the collection as a 3D
    network through the memory-bounded slab inferer, DANIE also slice by slice (its Synapse bundle's default), and
    MONAI's references."""
    from monai.networks.nets import AttentionUnet, BasicUNet, BasicUNetPlusPlus, SwinUNETR

    from attnseg_monai.networks import get_network

    window = list(window3d) if window3d else [32, 32, 32] if quick else [96, 96, 64]
    narrow = (4, 8, 16, 32, 64) if quick else _FEATURES_3D

    def ours(name: str, classes: int = 3, **kwargs: Any) -> Callable[[], nn.Module]:
        return lambda: get_network(name, spatial_dims=3, in_channels=1, out_channels=classes, **kwargs)

    return {
        "hannet": (ours("hannet", features=narrow), "slab", window, 3),
        "mcsaunet": (ours("mcsaunet", features=narrow), "slab", window, 3),
        "focalattentionunet": (ours("focalattentionunet", features=narrow), "slab", window, 3),
        "gridattentionunet": (
            ours("gridattentionunet", features=(4, 8, 16, 32, 64) if quick else (16, 32, 64, 128, 256)),
            "slab",
            window,
            3,
        ),
        "danie3d": (ours("danie_small", 9, img_size=tuple(window)), "slab", window, 9),
        "danie": (lambda: get_network("danie", spatial_dims=2, in_channels=1, out_channels=9), "slicewise", None, 9),
        "monai.basicunet": (
            _divisible_by(
                lambda: BasicUNet(3, 1, 3, features=(4, 4, 8, 16, 32, 4) if quick else (16, 16, 32, 64, 128, 16)), 16
            ),
            "slab",
            window,
            3,
        ),
        "monai.basicunetplusplus": (
            _divisible_by(
                lambda: BasicUNetPlusPlus(
                    3, 1, 3, features=(4, 4, 8, 16, 32, 4) if quick else (16, 16, 32, 64, 128, 16)
                ),
                16,
            ),
            "slab",
            window,
            3,
        ),
        "monai.attentionunet": (
            _divisible_by(lambda: AttentionUnet(3, 1, 3, narrow, (2, 2, 2, 2)), 16),
            "slab",
            window,
            3,
        ),
        "monai.swinunetr": (  # five 2x downsamplings: at least 64 per side keeps instance norm above 1 voxel
            _divisible_by(
                lambda: SwinUNETR(in_channels=1, out_channels=3, spatial_dims=3, feature_size=12 if quick else 24), 32
            ),
            "slab",
            [max(w, 64) for w in window],
            3,
        ),
    }


def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics (as a trained network has), eval mode."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _flops_per_element(net: nn.Module, size: tuple[int, ...], in_channels: int) -> float:
    from attnseg_monai.networks import describe_network

    return float(describe_network(net, size, in_channels=in_channels).flops_per_element)


# ---------------------------------------------------------------------------------------------------- sections
def bench_2d(args: argparse.Namespace, peak: dict[str, float], log: Callable[[str], None]) -> list[dict]:
    from monai.inferers import SlidingWindowInferer

    from attnseg_monai.inferers import FastSlidingWindowInferer

    width, height = args.slide
    slide = torch.rand(1, 3, width, height)  # PILReader's (C, W, H) order, as the bundles load a PNG
    pixels = width * height
    factories = networks_2d(3, 2)
    rows = []
    # the stitch alone: a one-convolution network through both window grids (what the loop, padding and blending cost)
    trivial = nn.Conv2d(3, 2, 1).eval()
    trivial.size_divisible_by = 16
    stitch = {
        "monai-grid": SlidingWindowInferer(roi_size=args.baseline_roi, sw_batch_size=1, overlap=0.25),
        "fitted-gaussian": FastSlidingWindowInferer(
            roi_size=args.fast_roi, overlap=args.fast_overlap, mode="gaussian", precision="fp32", fit_windows=True
        ),
    }
    with torch.inference_mode():
        for key, inferer in stitch.items():
            inferer(slide, trivial)
            seconds = measure(lambda inferer=inferer: inferer(slide, trivial))["seconds"]
            rows.append({"network": f"stitch only ({key})", "stitch_seconds": seconds})
            log(f"  2d stitch only {key:16s} {seconds:8.2f} s")
    for name in args.networks:
        if name not in factories:
            continue
        net = _randomise(factories[name]())
        divisor = int(net.size_divisible_by)
        flops_pp = _flops_per_element(net, (args.flops_size,) * 2, 3)
        flops = flops_pp * pixels
        runs: dict[str, Any] = {}
        fitted = fitted_grid(args.fast_roi, args.fast_overlap, divisor)
        fast = FastSlidingWindowInferer(precision=args.precision, engine=args.engine, **fitted)
        variants: dict[str, Any] = {"fast": (fast, net)}
        if "fast-torch" in args.variants:
            variants["fast-torch"] = (FastSlidingWindowInferer(precision=args.precision, engine="torch", **fitted), net)
        direct: dict[str, Any] = {}
        for kind in ("openvino", "onnxruntime"):
            if kind in args.variants:
                try:
                    direct[kind] = DirectEngine(kind, net, (1, 3, *fast._grid(slide, net)[0]))
                    variants[kind] = (
                        FastSlidingWindowInferer(precision="fp32", engine="torch", **fitted),
                        direct[kind],
                    )
                except Exception as exc:  # noqa: BLE001 - an engine that cannot take the network is a finding
                    runs[kind] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
                    log(f"  2d {name:24s} {kind:16s} failed: {runs[kind]['error'][:150]}")
        if name in args.ablation_networks:
            variants["fast-monai-grid"] = (
                FastSlidingWindowInferer(
                    roi_size=args.baseline_roi, sw_batch_size=1, overlap=0.25, mode="constant", precision=args.precision
                ),
                net,
            )
        if not args.no_baseline:
            variants["monai-fp32"] = (
                SlidingWindowInferer(roi_size=args.baseline_roi, sw_batch_size=1, overlap=0.25),
                net,
            )
        with torch.inference_mode():
            prep = measure(lambda fast=fast, net=net: fast.prepared_network(net, fast.policy_for("cpu")))
            for key, (inferer, runner) in variants.items():
                roi = (
                    (args.baseline_roi,) * 2 if key in ("monai-fp32", "fast-monai-grid") else fast._grid(slide, net)[0]
                )
                warm = torch.rand(1, 3, *roi)
                start = time.perf_counter()
                inferer(warm, runner)  # one window: primitive caches, weight maps, OpenVINO conversion and compilation
                warmup = time.perf_counter() - start
                m = measure_median(lambda inferer=inferer, runner=runner: inferer(slide, runner), args.repeats)
                out = m.pop("result")
                runs[key] = {
                    **m,
                    "warmup_seconds": warmup,
                    "mpix_per_s": pixels / 1e6 / m["seconds"],
                    "gflops": flops / 1e9 / m["seconds"],
                    "windows": getattr(inferer, "last_grid", None),
                    "labels": out.argmax(1).to(torch.uint8),
                }
                if key in direct:
                    runs[key]["prepare_seconds"] = direct[key].prepare_seconds
                if key.startswith("fast"):
                    runs[key].update(engine_of(inferer, net))
                log(
                    f"  2d {name:24s} {key:16s} {m['seconds']:8.2f} s  first window {warmup:6.2f} s  "
                    f"peak {m['peak_rss_gb'] or 0:.2f} GB"
                )
        row: dict[str, Any] = {
            "network": name,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "kflop_per_pixel": flops_pp / 1e3,
            "prepare_seconds": prep["seconds"],
            "policy": fast.policy_for("cpu").name,
            "batch_norms_folded": fast.prepared_network(net, fast.policy_for("cpu")).batch_norms_folded,
        }
        for key, r in runs.items():
            if "labels" not in r:  # an engine that failed
                continue
            labels = r.pop("labels")
            if key != "monai-fp32" and "monai-fp32" in runs:
                r["agreement_with_fp32"] = float((labels == runs["monai-fp32"]["labels"]).float().mean())
            r["peak_fraction"] = r["gflops"] / peak[PEAK_OF.get(key, "bf16")]
            r["windows"] = None if r["windows"] is None else [list(r["windows"][0]), list(r["windows"][1])]
        for key, r in runs.items():
            r.pop("labels", None)
            row[key] = r
        if "monai-fp32" in runs:
            row["speedup"] = runs["monai-fp32"]["seconds"] / runs["fast"]["seconds"]
        rows.append(row)
    return rows


def inferer_3d(kind: str, roi: list[int] | None, shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...], torch.Tensor]:
    """The plain inferer of a 3D case (``"slab"``: the slab sliding window over ``roi``; ``"slicewise"``: 8 slices a
    call), the network's input shape per call, and a warm-up volume that makes the network see every call shape a
    volume of ``shape`` gives (for slices: a full batch of 8 and the volume's last, shorter batch)."""
    from attnseg_monai.inferers import SlabSlidingWindowInferer, SliceWiseInferer

    if kind == "slab":
        base = SlabSlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=0.25, mode="gaussian", output="labels")
        return base, (1, 1, *roi), torch.rand(1, 1, *roi)
    base = SliceWiseInferer(roi_size=None, sw_batch_size=8, axis=-1, output="labels")
    return base, (8, 1, shape[0], shape[1]), torch.rand(1, 1, shape[0], shape[1], 8 + shape[2] % 8)


def _bench_3d_case(
    name: str,
    factory: Callable[[], nn.Module],
    kind: str,
    roi: list[int] | None,
    classes: int,
    volume: torch.Tensor,
    args: argparse.Namespace,
    peak: dict[str, float],
) -> dict[str, Any]:
    """One 3D case: the volume through the fast path (slab or slice-wise), labels out; the other engines of
    ``args.variants`` through the same inferer in ``row["engines"]``, labels compared with onnxruntime's float32 run."""
    from attnseg_monai.inferers import with_fast_path

    shape = tuple(volume.shape[2:])
    voxels = math.prod(shape)
    net = _randomise(factory())
    base, window, warm = inferer_3d(kind, roi, shape)
    flops_pp = _flops_per_element(net, tuple(roi) if kind == "slab" else shape[:2], 1)
    variants: dict[str, Any] = {"fast": (with_fast_path(base, precision=args.precision, engine=args.engine), net)}
    if "fast-torch" in args.variants:
        variants["fast-torch"] = (with_fast_path(base, precision=args.precision, engine="torch"), net)
    engines: dict[str, Any] = {}
    for engine in ("openvino", "onnxruntime"):
        if engine in args.variants:
            try:
                variants[engine] = (base, DirectEngine(engine, net, window))
            except Exception as exc:  # noqa: BLE001 - an engine that cannot take the network is a finding
                engines[engine] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
    labels: dict[str, torch.Tensor] = {}
    for key, (inferer, runner) in variants.items():
        try:
            with torch.inference_mode():
                start = time.perf_counter()
                inferer(warm, runner)
                warmup = time.perf_counter() - start
                m = measure_median(lambda inferer=inferer, runner=runner: inferer(volume, runner), args.repeats)
        except Exception as exc:  # noqa: BLE001
            if key == "fast":
                raise
            engines[key] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
            continue
        labels[key] = m.pop("result")
        gflops = flops_pp * voxels / 1e9 / m["seconds"]
        engines[key] = {
            **m,
            "warmup_seconds": warmup,
            "mvox_per_s": voxels / 1e6 / m["seconds"],
            "gflops": gflops,
            "peak_fraction": gflops / peak[PEAK_OF.get(key, "bf16")],
        }
        if key.startswith("fast"):
            engines[key].update(engine_of(inferer, net))
    if "onnxruntime" in labels:  # the float32 network, run by another engine: the labels' reference
        for key, lab in labels.items():
            engines[key]["agreement_with_fp32"] = float((lab == labels["onnxruntime"]).float().mean())
    fast = engines.pop("fast")
    row = {
        "network": name,
        "inferer": kind,
        "window": roi,
        "classes": classes,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "policy": variants["fast"][0].policy_for("cpu").name,
        "kflop_per_voxel": flops_pp / 1e3,
        **fast,
        "labels_dtype": str(labels["fast"].dtype),
        "engines": engines,
    }
    row["peak_fraction"] = row["gflops"] / peak["bf16" if row["policy"] != "fp32" else "fp32"]
    return row


def bench_3d(args: argparse.Namespace, peak: dict[str, float], log: Callable[[str], None]) -> list[dict]:
    shape = tuple(args.volume)
    gen = torch.Generator().manual_seed(0)
    volume = torch.rand((1, 1, *shape), generator=gen)
    rows = []
    cases = networks_3d(args.quick, args.window3d)
    for name in args.networks3d:
        if name not in cases:
            continue
        factory, kind, roi, classes = cases[name]
        try:
            row = _bench_3d_case(name, factory, kind, roi, classes, volume, args, peak)
        except Exception as exc:  # noqa: BLE001 - one network failing must not end a long run
            log(f"  3d {name}: {exc.__class__.__name__}: {str(exc)[:200]}")
            rows.append({"network": name, "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"})
            continue
        log(f"  3d {name:24s} {row['seconds']:8.2f} s  peak {row['peak_rss_gb'] or 0:.2f} GB")
        rows.append(row)
    return rows


def _foreground_dice(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = int(pred.sum()) + int(truth.sum())
    return 2.0 * int((pred & truth).sum()) / total if total else 1.0


def _dice_argmax(a: torch.Tensor, b: torch.Tensor, classes: int) -> float:
    """Mean Dice over the classes present in either label map (1.0 when no class is present)."""
    scores = [_foreground_dice(a == k, b == k) for k in range(classes) if bool((a == k).any() or (b == k).any())]
    return float(np.mean(scores)) if scores else 1.0


def bench_accuracy(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer
    from PIL import Image

    from attnseg_monai.bundle import load_weights
    from attnseg_monai.data.samples import make_nuclei_sample

    ckpt = Path(args.checkpoint) if args.checkpoint else ROOT / "bundles" / "hannet" / "models" / "model.pt"
    if not ckpt.is_file():
        log(f"  accuracy: no checkpoint at {ckpt}: skipped (train hannet first, or pass --checkpoint)")
        return {"skipped": f"no checkpoint at {ckpt}"}
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "hannet" / "configs" / "inference.json"))
    parser["bundle_root"] = str(ROOT / "bundles" / "hannet")
    parser["ckpt_path"] = str(ckpt)  # the network recorded beside the checkpoint
    parser["device"] = "$torch.device('cpu')"
    for key, value in json.loads(args.accuracy_overrides or "{}").items():
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    load_weights(net, ckpt)
    net.eval()
    fast = parser.get_parsed_content("inferer")
    parser["precision"] = "fp32"  # the bundle's own window grid in float32: separates precision from grid
    same_grid_fp32 = parser.get_parsed_content("inferer", instantiate=True, lazy=False)
    classes = int(parser.get_parsed_content("num_classes"))
    monai_default = SlidingWindowInferer(roi_size=256, sw_batch_size=1, overlap=0.25)
    tmp = tempfile.TemporaryDirectory(prefix="bench_speed_nuclei_")
    items = make_nuclei_sample(tmp.name, num_tiles=args.accuracy_tiles, tile_size=256)
    rows = []
    with tmp, torch.inference_mode():
        for item in items:
            rgb = np.asarray(Image.open(item["image"]).convert("RGB"), dtype=np.float32) / 255.0
            x = torch.from_numpy(rgb).permute(2, 1, 0)[None].contiguous()  # (1, C, W, H) as the bundle loads it
            ref = monai_default(x, net).argmax(1)
            out = fast(x, net).argmax(1)
            grid_ref = same_grid_fp32(x, net).argmax(1)
            # the hand annotation (instance ids, 0 background) in the same (W, H) layout: nuclei foreground
            truth = torch.from_numpy(np.asarray(Image.open(item["label"])).astype(np.int64).T)[None] > 0
            rows.append(
                {
                    "image": Path(item["image"]).name,
                    "size": list(x.shape[2:]),
                    "dice": _dice_argmax(ref, out, classes),
                    "pixel_agreement": float((ref == out).float().mean()),
                    "dice_same_grid": _dice_argmax(grid_ref, out, classes),
                    "classes_present": sorted(int(c) for c in torch.unique(ref)),
                    "truth_dice_fp32": _foreground_dice(ref > 0, truth),
                    "truth_dice_fast": _foreground_dice(out > 0, truth),
                }
            )
            r = rows[-1]
            log(
                f"  accuracy {r['image']:28s} dice {r['dice']:.4f} (same grid {r['dice_same_grid']:.4f}); "
                f"to the annotation: fp32 {r['truth_dice_fp32']:.4f}, fast {r['truth_dice_fast']:.4f}"
            )
    real = [r for r in rows if "bbbc038" in r["image"]]
    return {
        "checkpoint": str(ckpt),
        "overrides": args.accuracy_overrides,
        "policy": fast.policy_for("cpu").name,
        "images": rows,
        "mean_dice": float(np.mean([r["dice"] for r in rows])),
        "mean_dice_same_grid": float(np.mean([r["dice_same_grid"] for r in rows])),
        "real_dice_same_grid": real[0]["dice_same_grid"] if real else None,
        "real_dice": real[0]["dice"] if real else None,
        "real_truth_dice_fp32": real[0]["truth_dice_fp32"] if real else None,
        "real_truth_dice_fast": real[0]["truth_dice_fast"] if real else None,
    }


def _training_case(bundle: str, quick: bool) -> dict[str, Any]:
    """Network, loss, optimiser, batch and patch size of a bundle's default ``train.json`` recipe."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(ROOT / "bundles" / bundle)
    parser["network_def#record"] = None  # the recipe's network, whatever a trained models/model.pt records
    parser["device"] = "$torch.device('cpu')"
    net = parser.get_parsed_content("network")
    loss = parser.get_parsed_content("loss")
    optimizer = parser.get_parsed_content("optimizer")

    def first(*ids: str, default: Any = None) -> Any:
        for key in ids:
            try:
                return parser.get_parsed_content(key)
            except Exception:  # noqa: BLE001, S112 - ids differ between bundles; the first that resolves wins
                continue
        return default

    batch = int(first("batch_size", "train#dataloader#batch_size", default=2))
    samples = first("num_samples", default=1)
    batch *= int(samples) if isinstance(samples, int) else 1
    patch = first("train_patch_size", "patch_size", "roi_size", "slice_size")
    dims = int(getattr(net, "spatial_dims", 2))
    if isinstance(patch, int):
        patch = [patch] * dims
    if not patch:
        patch = [128] * dims if dims == 2 else [64, 64, 32]
    if quick:
        batch, patch = 1, [min(int(p), 32) for p in patch]
    return {
        "net": net,
        "loss": loss,
        "optimizer": optimizer,
        "batch": batch,
        "patch": [int(p) for p in patch],
        "classes": int(net.out_channels),
        "in_channels": int(net.in_channels),
    }


def bench_training(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict]:
    rows = []
    for bundle in args.bundles:
        try:
            case = _training_case(bundle, args.quick)
        except Exception as exc:  # noqa: BLE001 - a bundle being edited must not stop the benchmark
            log(f"  training {bundle}: recipe not readable ({exc.__class__.__name__}: {str(exc)[:200]})")
            rows.append({"bundle": bundle, "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"})
            continue
        net, loss_fn, optimizer = case["net"], case["loss"], case["optimizer"]
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((case["batch"], case["in_channels"], *case["patch"]), generator=gen)
        y = torch.randint(0, case["classes"], (case["batch"], 1, *case["patch"]), generator=gen)
        target = y[:, 0] if isinstance(loss_fn, nn.CrossEntropyLoss) else y
        row: dict[str, Any] = {"bundle": bundle, "batch": case["batch"], "patch": case["patch"]}
        initial = {k: v.clone() for k, v in net.state_dict().items()}
        for mode in ("fp32", "bf16-autocast"):
            net.load_state_dict(initial)
            net.train()

            def step(mode=mode, net=net, x=x, loss_fn=loss_fn, target=target, optimizer=optimizer) -> float:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
                    pred = net(x)
                    loss = loss_fn(pred, target)
                loss.backward()
                optimizer.step()
                return float(loss)

            try:
                first_loss = step()  # warm-up (primitive caches)
                times = []
                for _ in range(args.train_steps):
                    m = measure(step)
                    times.append(m["seconds"])
                row[mode] = {
                    "step_seconds": float(np.median(times)),
                    "peak_rss_gb": m["peak_rss_gb"],
                    "first_loss": first_loss,
                }
                log(f"  training {bundle:16s} {mode:14s} {row[mode]['step_seconds']:.3f} s/step")
            except Exception as exc:  # noqa: BLE001
                row[mode] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
                log(f"  training {bundle} {mode}: {row[mode]['error']}")
        try:  # the forward pass alone, no gradients: all an inference-only engine (OpenVINO) could take over
            net.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                net(x)
                forward = [measure(lambda net=net, x=x: net(x))["seconds"] for _ in range(args.train_steps)]
            row["forward_seconds"] = float(np.median(forward))
            if "step_seconds" in row.get("bf16-autocast", {}):
                row["forward_share"] = row["forward_seconds"] / row["bf16-autocast"]["step_seconds"]
        except Exception as exc:  # noqa: BLE001
            row["forward_error"] = f"{exc.__class__.__name__}: {str(exc)[:200]}"
        if "step_seconds" in row.get("fp32", {}) and "step_seconds" in row.get("bf16-autocast", {}):
            row["speedup"] = row["fp32"]["step_seconds"] / row["bf16-autocast"]["step_seconds"]
            row["first_loss_rel_diff"] = abs(row["fp32"]["first_loss"] - row["bf16-autocast"]["first_loss"]) / max(
                abs(row["fp32"]["first_loss"]), 1e-12
            )
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- reporting
def _f(value: Any, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


_VARIANT_NAMES = {
    "fast": "fast path (auto)",
    "fast-torch": "fast path, torch",
    "openvino": "OpenVINO direct",
    "onnxruntime": "onnxruntime fp32",
}


def _engine_cell(v: dict[str, Any] | None) -> str:
    """``seconds (labels equal %, % of peak)`` of one engine run, or why it failed."""
    if not v:
        return "–"
    if "error" in v:
        return f"failed: {v['error'][:60]}"
    agree = v.get("agreement_with_fp32")
    engine = f" [{v['engine']}]" if v.get("engine") else ""
    extra = [f"{100 * agree:.2f}%" if agree is not None else None, f"{100 * v['peak_fraction']:.0f}% pk"]
    return f"{v['seconds']:.2f}{engine} ({', '.join(e for e in extra if e)})"


def _engine_lines(rows: list[dict[str, Any]], what: str, reference: str) -> list[str]:
    """The engines table of one section: seconds per variant, ours (auto) against OpenVINO direct."""
    keys = [k for k in ENGINE_VARIANTS if any(k in r for r in rows)]
    if len(keys) < 2:
        return []
    lines = [
        f"**Engines, {what}**, same windows: seconds [engine the fast path ran] (labels equal to {reference}, "
        "effective GFLOP/s as % of the measured peak: bf16 for all but onnxruntime, fp32 for it); first window = "
        "warm-up including OpenVINO conversion from an empty cache.",
        "",
        "| network | " + " | ".join(_VARIANT_NAMES[k] for k in keys) + " | auto vs OpenVINO | first window auto s |",
        "|---|" + "---:|" * (len(keys) + 2),
    ]
    for r in rows:
        cells = [_engine_cell(r.get(k)) for k in keys]
        ours, ov = r.get("fast", {}), r.get("openvino", {})
        ratio = ov["seconds"] / ours["seconds"] if "seconds" in ours and "seconds" in ov else None
        lines.append(
            f"| `{r['network']}` | " + " | ".join(cells) + f" | {_f(ratio)}x | {_f(ours.get('warmup_seconds'))} |"
        )
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (what ``--write-docs`` puts into docs/benchmarks.md)."""
    m = results["machine"]
    lines = [
        f"Run of {results['date']} (`{results['command']}`), {m['cpu']}, {m['threads']} threads, torch "
        f"{m['torch']}, MONAI {m['monai']}; load average {m['load_before'][0]:.2f} before and "
        f"{m['load_after'][0]:.2f} after (1 min).",
        f"Measured matmul peak: **{m['peak_fp32']:.0f} GFLOP/s float32, {m['peak_bf16']:.0f} GFLOP/s bfloat16** "
        f"({m['peak_n']}^3, {m.get('peak_statistic', 'best')} of {m['peak_repeats']}"
        + (
            f"; the best single product: {m['peak_best_fp32']:.0f} / {m['peak_best_bf16']:.0f}). "
            if "peak_best_bf16" in m
            else "). "
        )
        + (
            f"Measured again at the end of the run: {m['peak_fp32_end']:.0f} / {m['peak_bf16_end']:.0f}. "
            if "peak_bf16_end" in m
            else ""
        )
        + f"Fast-path policy here: `{m['policy']}` ({m['policy_reason']}).",
        "",
    ]
    if results.get("2d"):
        w, h = results["args"]["slide"]
        lines += [
            f"**2D, one {w}x{h} RGB slide** (random weights, batch-norm statistics set; labels compared with "
            "the float32 run).",
            "",
            "| network | kFLOP/px | MONAI fp32 s | fast s | speed-up | fast Mpx/s | fast GFLOP/s | % of bf16 peak "
            "| fp32 % of fp32 peak | fast peak RSS GB | fp32 peak RSS GB | labels equal |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["2d"]:
            if "stitch_seconds" in r:
                continue
            fast, base = r.get("fast", {}), r.get("monai-fp32", {})
            lines.append(
                f"| `{r['network']}` | {r['kflop_per_pixel']:.0f} | {_f(base.get('seconds'), '.1f')} "
                f"| {_f(fast.get('seconds'), '.1f')} | {_f(r.get('speedup'), '.1f')}x | {_f(fast.get('mpix_per_s'))} "
                f"| {_f(fast.get('gflops'), '.0f')} | {_f(100 * fast['peak_fraction'] if fast else None, '.0f')} "
                f"| {_f(100 * base['peak_fraction'] if base else None, '.0f')} | {_f(fast.get('peak_rss_gb'))} "
                f"| {_f(base.get('peak_rss_gb'))} | {_f(100 * fast['agreement_with_fp32'] if 'agreement_with_fp32' in fast else None, '.2f')}% |"  # noqa: E501
            )
        repeated = [
            r for r in results["2d"] if len(r.get("fast", {}).get("runs", [])) > 1 and "runs" in r.get("monai-fp32", {})
        ]
        if repeated:
            lines += ["", "Seconds are medians of repeated runs after a warm-up; the speed-up of each run:"]
            lines += [
                f"`{r['network']}` "
                + ", ".join(f"{b / f:.2f}x" for b, f in zip(r["monai-fp32"]["runs"], r["fast"]["runs"]))
                + f" (MONAI fp32 {', '.join(f'{b:.1f}' for b in r['monai-fp32']['runs'])} s; "
                + f"fast {', '.join(f'{f:.2f}' for f in r['fast']['runs'])} s)."
                for r in repeated
            ]
        stitches = [r for r in results["2d"] if "stitch_seconds" in r]
        if stitches:
            lines += [
                "",
                "The stitch alone (a 1x1 convolution as the network): "
                + ", ".join(f"{r['network'][len('stitch only (') : -1]} {r['stitch_seconds']:.2f} s" for r in stitches)
                + ".",
            ]
        abl = [r for r in results["2d"] if "fast-monai-grid" in r]
        if abl:
            lines += ["", "Where the gain comes from (same network, same slide):", ""]
            lines += ["| network | MONAI fp32, 256 grid | fast path, same 256 grid | fast path, fitted 512 grid |"]
            lines += ["|---|---:|---:|---:|"]
            for r in abl:
                lines.append(
                    f"| `{r['network']}` | {_f(r.get('monai-fp32', {}).get('seconds'), '.1f')} s "
                    f"| {r['fast-monai-grid']['seconds']:.1f} s | {r['fast']['seconds']:.1f} s |"
                )
        lines.append("")
        lines += _engine_lines([r for r in results["2d"] if "fast" in r], "2D slide", "MONAI fp32")
    if results.get("3d"):
        shape = "x".join(str(s) for s in results["args"]["volume"])
        lines += [
            f"**3D, one {shape} volume**, labels out (uint8), fast path:",
            "",
            "| network | inferer | window | classes | kFLOP/voxel | s | Mvox/s | GFLOP/s | % of bf16 peak "
            "| peak RSS GB | held before GB | added GB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in results["3d"]:
            if "error" in r:
                lines.append(f"| `{r['network']}` | failed: {r['error'][:100]} |" + " |" * 10)
                continue
            window = "x".join(str(s) for s in r["window"]) if r["window"] else "whole slices"
            added = r["peak_rss_gb"] - r["rss_before_gb"] if r.get("peak_rss_gb") and "rss_before_gb" in r else None
            lines.append(
                f"| `{r['network']}` | {r['inferer']} | {window} | {r['classes']} | {r['kflop_per_voxel']:.0f} "
                f"| {r['seconds']:.1f} | {r['mvox_per_s']:.2f} | {r['gflops']:.0f} | {100 * r['peak_fraction']:.0f} "
                f"| {_f(r['peak_rss_gb'])} | {_f(r.get('rss_before_gb'))} "
                f"| {_f(added)} |"
            )
        lines += [
            "",
            "Peak RSS is the process's high-water mark during the run, including what it held before (imports, the "
            'volume, the networks and slides of the earlier sections); "added" is what the inference itself took. '
            "A process that runs only a bundle's CT inference is measured in the bundles' docs (attention_unet: "
            "1.09 GB for the default recipe, 1.50 GB at features 16-256 and 1x1x2.5 mm).",
            "",
        ]
        rows3d = [{"network": r["network"], "fast": r, **r.get("engines", {})} for r in results["3d"] if "seconds" in r]
        lines += _engine_lines(rows3d, "3D volume", "onnxruntime's float32 run")
    acc = results.get("accuracy")
    if acc and "images" in acc:
        lines += [
            f"**Accuracy**: trained hannet (`{acc['checkpoint']}`"
            + (f", overrides `{acc['overrides']}`" if acc.get("overrides") else "")
            + "), MONAI float32 (roi 256, overlap 0.25) against the "
            f"bundle's inferer (`{acc['policy']}`): mean Dice of the argmax outputs **{acc['mean_dice']:.4f}** over "
            f"{len(acc['images'])} images; real BBBC038 image: **{_f(acc['real_dice'], '.4f')}**; nuclei Dice to "
            f"its hand annotation: MONAI fp32 {_f(acc.get('real_truth_dice_fp32'), '.4f')}, fast path "
            f"{_f(acc.get('real_truth_dice_fast'), '.4f')}.",
            "",
            '"Same grid" runs the bundle\'s inferer (fitted windows, gaussian blending) in float32 as the reference, '
            "which isolates what bf16 costs from what the window grid changes; the last two columns score each path "
            "against the hand annotation (nuclei foreground Dice; the generated tiles' labels are the phantom's own "
            f"masks). Mean Dice fast vs fp32 on the same grid: **{_f(acc.get('mean_dice_same_grid'), '.4f')}**.",
            "",
            "| image | size | Dice fast vs MONAI fp32 | pixels equal | Dice fast vs fp32, same grid "
            "| fp32 vs annotation | fast vs annotation |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['image']} | {'x'.join(map(str, r['size']))} | {r['dice']:.4f} | {100 * r['pixel_agreement']:.2f}% "
            f"| {_f(r.get('dice_same_grid'), '.4f')} "
            f"| {_f(r.get('truth_dice_fp32'), '.4f')} | {_f(r.get('truth_dice_fast'), '.4f')} |"
            for r in acc["images"]
        ]
        if all(len(r["classes_present"]) < 2 for r in acc["images"]):
            lines += [
                "",
                "WARNING: the float32 outputs hold a single class: the checkpoint is untrained, the Dice is void.",
            ]
        lines.append("")
    elif acc:
        lines += [f"**Accuracy**: skipped ({acc.get('skipped')}).", ""]
    lines += ct_markdown(results.get("accuracy_ct") or [])
    lines += gpu_markdown(results.get("gpu") or {})
    if results.get("training"):
        lines += [
            "**Training**, one optimiser step of each bundle's default recipe (median of "
            f"{results['args']['train_steps']}):",
            "",
            "| bundle | batch x patch | fp32 s/step | bf16 autocast s/step | speed-up | first-loss rel. diff |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in results["training"]:
            if "error" in r:
                lines.append(f"| {r['bundle']} | – | – | – | – | {r['error'][:80]} |")
                continue
            fp, bf = r.get("fp32", {}), r.get("bf16-autocast", {})
            lines.append(
                f"| {r['bundle']} | {r['batch']} x {'x'.join(map(str, r['patch']))} "
                f"| {_f(fp.get('step_seconds'), '.3f')} | {_f(bf.get('step_seconds'), '.3f')} "
                f"| {_f(r.get('speedup'))}x | {_f(r.get('first_loss_rel_diff'), '.1e')} |"
            )
        shares = [
            f"{r['bundle']} {100 * r['forward_share']:.0f} %" for r in results["training"] if "forward_share" in r
        ]
        lines += [
            "",
            "OpenVINO and the other inference engines do not help training: they run a forward pass without gradients "
            "and have no backward pass or optimiser, so a training step stays on torch (`train_precision`). The "
            "forward pass alone (bf16 autocast, no gradients) is this share of a bf16 training step: "
            + (", ".join(shares) if shares else "not measured")
            + "; even an engine twice as fast on it would save at most half of that share, and it cannot compute "
            "the gradients that the rest of the step needs.",
            "",
        ]
    return "\n".join(lines)


def plots(results: dict[str, Any], folder: Path) -> list[Path]:
    """Bar charts of the 2D and 3D results (skipped, with a note, when matplotlib is not installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    rows = [r for r in results.get("2d", []) if "fast" in r]
    if rows:
        names = [r["network"].replace("monai.", "MONAI ") for r in rows]
        y = np.arange(len(rows))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 1.8), sharey=True)
        base = [r.get("monai-fp32", {}).get("seconds", np.nan) for r in rows]
        fast = [r["fast"]["seconds"] for r in rows]
        ax1.barh(y - 0.2, base, 0.4, label="MONAI default, float32", color="#999999")
        ax1.barh(y + 0.2, fast, 0.4, label=f"fast path ({results['machine']['policy']})", color="#1f77b4")
        ax1.set_yticks(y, names)
        ax1.invert_yaxis()
        ax1.set_xlabel("seconds per 1720x1280 slide")
        ax1.legend(loc="lower right")
        peak = results["machine"]["peak_bf16"]
        ax2.barh(y, [100 * r["fast"]["gflops"] / peak for r in rows], 0.5, color="#1f77b4")
        ax2.axvline(35, color="k", ls="--", lw=1)
        ax2.set_xlabel("effective GFLOP/s, % of measured bf16 matmul peak")
        fig.suptitle(f"2D slide inference, {results['machine']['threads']} threads, {results['machine']['cpu']}")
        fig.tight_layout()
        path = folder / "bench_speed_2d.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    r3 = [r for r in results.get("3d", []) if "seconds" in r]
    if r3:
        shape = "x".join(str(v) for v in results["args"]["volume"])
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(r3) + 1.8), sharey=True)
        y = np.arange(len(r3))
        names = [
            r["network"].replace("monai.", "MONAI ") + (" (slices)" if r["inferer"] == "slicewise" else "") for r in r3
        ]
        ax1.barh(y, [r["seconds"] for r in r3], color="#1f77b4")
        ax1.set_yticks(y, names)
        ax1.invert_yaxis()
        ax1.set_xlabel(f"seconds per {shape} volume (fast path, labels out)")
        held = [r.get("rss_before_gb", 0.0) for r in r3]
        added = [(r["peak_rss_gb"] or 0.0) - h for r, h in zip(r3, held)]
        ax2.barh(y, held, color="#bbbbbb", label="held before (imports, volume, earlier sections)")
        ax2.barh(y, added, left=held, color="#2ca02c", label="added by the inference")
        ax2.axvline(2.0, color="k", ls="--", lw=1)
        ax2.set_xlabel("peak resident memory, GB (dashed: 2 GB)")
        ax2.set_xlim(0, 1.5 * max(h + a for h, a in zip(held, added)))
        ax2.legend(loc="upper right", fontsize=8)
        fig.suptitle(f"3D inference, {results['machine']['threads']} threads, {results['machine']['cpu']}")
        fig.tight_layout()
        path = folder / "bench_speed_3d.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    tr = [r for r in results.get("training", []) if "speedup" in r]
    if tr:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(tr) + 1.5))
        y = np.arange(len(tr))
        ax.barh(y - 0.2, [r["fp32"]["step_seconds"] for r in tr], 0.4, label="float32", color="#999999")
        ax.barh(y + 0.2, [r["bf16-autocast"]["step_seconds"] for r in tr], 0.4, label="bf16 autocast", color="#ff7f0e")
        ax.set_yticks(y, [r["bundle"] for r in tr])
        ax.invert_yaxis()
        ax.set_xlabel("seconds per training step")
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = folder / "bench_speed_training.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_docs(results: dict[str, Any], figures: list[Path]) -> None:
    """Replace the section between the bench_speed markers of docs/benchmarks.md with the results."""
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOCS} has no {BEGIN} ... {END} section to fill.")
    body = markdown(results)
    for path in figures:
        body += f"\n![{path.stem}](figures/{path.name})\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


# ---------------------------------------------------------------------------------------------------- main
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def merge_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from several saved runs (sections measured separately, e.g. on a quiet machine one at a time): the
    first run's machine and arguments, every run's command; a later run's accuracy/training/gpu section replaces an
    earlier one's, and its 2D/3D rows replace the rows of the same network."""
    merged = json.loads(json.dumps(runs[0]))
    sizes = {"2d": "slide", "3d": "volume"}  # a section's rows are comparable only at one slide / volume size
    for run in runs[1:]:
        for section, size in sizes.items():
            if run.get(section):
                before, now = merged["args"].get(size), run["args"].get(size)
                if merged.get(section) and before != now:
                    raise ValueError(f"cannot merge {section} rows measured at {size} {before} and {now}")
                merged["args"][size] = now
                names = {r["network"] for r in run[section]}
                kept = [r for r in merged.get(section) or [] if r["network"] not in names]
                merged[section] = kept + run[section]
        for section in ("accuracy", "accuracy_ct", "training", "gpu"):
            if run.get(section):
                merged[section] = run[section]
        merged["command"] += f"; {run['command']}"
        merged["date"] = max(merged["date"], run["date"])
        merged["machine"]["load_after"] = run["machine"]["load_after"]
    return merged


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    all2d = [
        "hannet",
        "mcsaunet",
        "focalattentionunet",
        "gridattentionunet",
        "danie",
        "monai.basicunet",
        "monai.basicunetplusplus",
        "monai.attentionunet",
        "monai.swinunetr",
    ]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and a subset: checks the code in seconds")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    p.add_argument("--networks", nargs="*", default=None, help=f"2D networks (default all: {' '.join(all2d)})")
    p.add_argument("--networks3d", nargs="*", default=None, help=f"3D cases (default all: {' '.join(ALL_3D)})")
    p.add_argument("--bundles", nargs="*", default=None, help=f"training recipes (default: {' '.join(BUNDLES)})")
    p.add_argument("--no-baseline", action="store_true", help="2D: leave out MONAI's float32 runs (the slow part)")
    p.add_argument("--ablation-networks", nargs="*", default=None, help="2D: also bf16 on MONAI's 256 grid")
    p.add_argument("--slide", nargs=2, type=int, default=None, metavar=("W", "H"), help="default 1720 1280")
    p.add_argument("--volume", nargs=3, type=int, default=None, help="default 512 512 200")
    p.add_argument("--window3d", nargs=3, type=int, default=None, help="3D slab window (default 96 96 64)")
    p.add_argument("--fast-roi", type=int, default=512, help="largest fast-path window (default 512)")
    p.add_argument("--fast-overlap", type=float, default=0.125, help="least fast-path overlap, fraction of the window")
    p.add_argument("--baseline-roi", type=int, default=256, help="MONAI baseline window (default 256)")
    p.add_argument("--flops-size", type=int, default=512, help="2D size at which FLOPs per pixel are counted")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--engine", default="auto", choices=("auto", "torch", "openvino"), help="engine of the fast row")
    p.add_argument(
        "--variants",
        nargs="*",
        default=list(ENGINE_VARIANTS),
        choices=ENGINE_VARIANTS,
        help="2D/3D rows besides MONAI fp32 (default all): fast (as shipped), fast-torch, openvino, onnxruntime",
    )
    p.add_argument("--gpu-device", default="cuda", help="device of the GPU section (cpu: check its code)")
    p.add_argument("--gpu-variants", nargs="*", default=list(GPU_VARIANTS), choices=GPU_VARIANTS)
    p.add_argument(
        "--openvino-cache", default=None, help="converted-model cache (default: a new empty one, so conversions count)"
    )
    p.add_argument("--checkpoint", default=None, help="trained hannet weights (default bundles/hannet/models/model.pt)")
    p.add_argument(
        "--accuracy-overrides", default=None, help='hannet inference.json overrides: {"network_def#features": [...]}'
    )
    p.add_argument(
        "--ct-bundles",
        nargs="*",
        default=None,
        choices=CT_BUNDLES,
        help=f"3D bundles whose trained models are checked on their CT phantoms (default {' '.join(CT_BUNDLES)}; "
        "--quick: none)",
    )
    p.add_argument(
        "--ct-checkpoint", nargs="*", default=[], metavar="BUNDLE=PATH", help="weights of a --ct-bundles bundle"
    )
    p.add_argument("--accuracy-tiles", type=int, default=4, help="generated tiles besides the real image")
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder of the JSON and markdown")
    p.add_argument("--write-docs", action="store_true", help="refresh docs/benchmarks.md and docs/figures/")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per 2D/3D variant after the warm-up (median)")
    p.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        help="no measurement: report (and --write-docs) saved runs; several are merged (a later file's sections and "
        "2D/3D rows replace an earlier one's)",
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.networks = args.networks or (["hannet", "monai.basicunet"] if quick else all2d)
    args.networks3d = args.networks3d or (["gridattentionunet", "danie"] if quick else list(ALL_3D))
    args.ct_bundles = ([] if quick else list(CT_BUNDLES)) if args.ct_bundles is None else args.ct_bundles
    args.bundles = args.bundles or (["hannet", "mcsa_unet"] if quick else list(BUNDLES))
    if args.ablation_networks is None:
        args.ablation_networks = ["hannet"] if quick else ["hannet", "monai.basicunetplusplus"]
    args.slide = args.slide or ([192, 160] if quick else [1720, 1280])
    args.volume = args.volume or ([64, 64, 32] if quick else [512, 512, 200])
    if quick:
        args.fast_roi, args.baseline_roi, args.flops_size = min(args.fast_roi, 128), min(args.baseline_roi, 64), 64
        args.train_steps, args.accuracy_tiles = 1, min(args.accuracy_tiles, 1)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    if args.from_json:
        results = merge_results([json.loads(Path(f).read_text()) for f in args.from_json])
    else:
        warnings.filterwarnings("ignore")
        if args.threads:
            torch.set_num_threads(args.threads)
        cache = tempfile.TemporaryDirectory(prefix="bench_openvino_cache_")
        os.environ["ATTNSEG_OPENVINO_CACHE"] = args.openvino_cache or cache.name
        import monai

        from attnseg_monai.precision import detect_capabilities, resolve_policy

        caps = detect_capabilities("cpu")
        policy = resolve_policy(args.precision, "cpu", capabilities=caps)
        n, repeats = (512, 3) if args.quick else (2048, 12)
        log(f"machine: {_cpu_name()}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
        measured = _peaks(n, repeats)
        peak = {k: v[0] for k, v in measured.items()}
        log(
            f"matmul peak (median; best): {peak['fp32']:.0f}; {measured['fp32'][1]:.0f} GFLOP/s fp32, "
            f"{peak['bf16']:.0f}; {measured['bf16'][1]:.0f} GFLOP/s bf16"
        )
        results = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python benchmarks/bench_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "args": {k: v for k, v in vars(args).items()},
            "machine": {
                "cpu": _cpu_name(),
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "monai": monai.__version__,
                "capabilities": caps.as_dict(),
                "cuda": torch.cuda.is_available(),
                "load_before": list(os.getloadavg()),
                "peak_fp32": peak["fp32"],
                "peak_bf16": peak["bf16"],
                "peak_best_fp32": measured["fp32"][1],
                "peak_best_bf16": measured["bf16"][1],
                "peak_statistic": "median",
                "peak_n": n,
                "peak_repeats": repeats,
                "policy": policy.name,
                "policy_reason": policy.reason,
            },
        }
        if "2d" not in args.skip:
            results["2d"] = bench_2d(args, peak, log)
        if "3d" not in args.skip:
            results["3d"] = bench_3d(args, peak, log)
        if "accuracy" not in args.skip:
            results["accuracy"] = bench_accuracy(args, log)
            checkpoints = dict(item.split("=", 1) for item in args.ct_checkpoint)
            results["accuracy_ct"] = bench_ct_accuracy(args.ct_bundles, log, checkpoints)
        if "training" not in args.skip:
            results["training"] = bench_training(args, log)
        if "gpu" not in args.skip:
            results["gpu"] = bench_gpu(args, networks_2d(3, 2), log)
        results["machine"]["load_after"] = list(os.getloadavg())
        # the peak again: on a VM it can move during a run (docs/benchmarks.md, "Readings and limits")
        end = _peaks(n, repeats)
        results["machine"]["peak_fp32_end"], results["machine"]["peak_bf16_end"] = end["fp32"][0], end["bf16"][0]
        log(f"matmul peak at the end (median): {end['fp32'][0]:.0f} GFLOP/s fp32, {end['bf16'][0]:.0f} GFLOP/s bf16")
        name = "bench_speed_quick" if args.quick else "bench_speed"
        (out / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
        (out / f"{name}.md").write_text(markdown(results))
        log(f"written: {out / (name + '.json')}, {out / (name + '.md')}")
    figures = plots(results, FIGURES if args.write_docs else out)
    if args.write_docs:
        write_docs(results, figures)
        log(f"docs updated: {DOCS}")
    sys.stdout.write(markdown(results) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
