"""Engines side by side for ``benchmarks/bench_speed.py``: OpenVINO and onnxruntime driven directly (the network
exported once with ``torch.onnx.export``, run window by window through the same fitted grid as the fast path), and
the GPU section (MONAI float32, the fast path, ``torch.compile`` and TensorRT through ``torch_tensorrt`` when
installed). On a machine without CUDA the GPU section is skipped with a message saying so.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ENGINE_VARIANTS", "GPU_VARIANTS", "DirectEngine", "bench_gpu", "engine_of", "fitted_grid", "gpu_markdown"]

#: what each 2D/3D case runs besides MONAI's float32 baseline: the fast path as shipped (engine auto), the fast path
#: on torch, OpenVINO and onnxruntime driven directly
ENGINE_VARIANTS = ("fast", "fast-torch", "openvino", "onnxruntime")
#: GPU rows: MONAI float32, the fast path (bf16/fp16 autocast), torch.compile of the prepared network, TensorRT
GPU_VARIANTS = ("monai-fp32", "fast", "compile", "tensorrt")
#: which measured matmul peak a variant's effective GFLOP/s is compared with
PEAK_OF = {"monai-fp32": "fp32", "onnxruntime": "fp32", "fast-fp32": "fp32"}


def fitted_grid(roi: int, overlap: float, divisor: int) -> dict[str, Any]:
    """``FastSlidingWindowInferer`` arguments of the fast path's fitted window grid (windows of at most ``roi``,
    overlap at least ``overlap`` of a window, sizes divisible by ``divisor``, Gaussian blending, one window a call),
    shared by every row that must run the same windows."""
    return {
        "roi_size": roi,
        "sw_batch_size": 1,
        "overlap": overlap,
        "mode": "gaussian",
        "fit_windows": True,
        "size_divisible_by": divisor,
    }


def engine_of(inferer: Any, net: nn.Module) -> dict[str, Any]:
    """The engine the fast path ran ``net`` on (``openvino``/``torch``) and why OpenVINO failed, if it did."""
    prepared = inferer.prepared_network(net, inferer.policy_for("cpu"))
    return {"engine": getattr(prepared, "engine", "torch"), "engine_error": getattr(prepared, "engine_error", None)}


@dataclass
class _Export:
    """One ONNX export of a network at one example shape, with the weights it was exported with."""

    net: nn.Module
    shape: tuple[int, ...]
    weights: float
    folder: tempfile.TemporaryDirectory
    path: Path
    seconds: float


#: the last export: the OpenVINO and onnxruntime rows of one case read the same ONNX file
_last_export: _Export | None = None


def _exported(net: nn.Module, example_shape: tuple[int, ...]) -> tuple[Path, float]:
    """``net`` exported to ONNX (float32, dynamic batch and sizes) and the seconds the export took; the engines of
    one case share the export (the file is kept until another network, shape or set of weights is exported)."""
    global _last_export
    with torch.no_grad():  # the weights are part of the key: a network changed in place is exported again
        weights = sum(float(t.double().sum()) for t in net.state_dict().values() if t.is_floating_point())
    last = _last_export
    if last is not None and last.net is net and last.shape == tuple(example_shape) and last.weights == weights:
        return last.path, last.seconds
    _last_export = None
    folder = tempfile.TemporaryDirectory(prefix="bench_onnx_")
    path = Path(folder.name) / "net.onnx"
    axes = {0: "batch", **{i: f"s{i}" for i in range(2, len(example_shape))}}
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(),
            (torch.rand(example_shape),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": axes},
            opset_version=17,
        )
    _last_export = _Export(net, tuple(example_shape), weights, folder, path, time.perf_counter() - start)
    return path, _last_export.seconds


class DirectEngine:
    """``net`` exported to ONNX (float32, dynamic batch and sizes; one export per case, shared by both engines, its
    time counted in each engine's ``prepare_seconds``) and run by ``kind`` (``"openvino"``: compiled
    per window shape with OpenVINO's default hints, i.e. bf16 on AMX; ``"onnxruntime"``: its CPU provider, float32),
    as a user would without attnseg's fast path. Called on a CPU tensor, returns the first output as float32.

    Raises:
        ImportError: when the engine is not installed; whatever the export raises.
    """

    def __init__(self, kind: str, net: nn.Module, example_shape: tuple[int, ...]) -> None:
        self.kind = kind
        path, export_seconds = _exported(net, example_shape)
        start = time.perf_counter()
        threads = torch.get_num_threads()
        if kind == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        elif kind == "openvino":
            import openvino as ov

            self._core = ov.Core()
            self._model = self._core.read_model(str(path))
            self._config = {"INFERENCE_NUM_THREADS": threads}
            self._compiled: dict[tuple[int, ...], Any] = {}
            self.hint = str(self._core.get_property("CPU", "INFERENCE_PRECISION_HINT"))
        else:
            raise ValueError(f"unknown engine {kind!r}")
        self.prepare_seconds = export_seconds + time.perf_counter() - start

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().contiguous().cpu().numpy()
        if self.kind == "onnxruntime":
            return torch.from_numpy(self._session.run(None, {"x": array})[0])
        shape = tuple(array.shape)
        if shape not in self._compiled:
            import openvino as ov

            model = self._model.clone()
            model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
            self._compiled[shape] = self._core.compile_model(model, "CPU", self._config)
        return torch.from_numpy(np.array(self._compiled[shape]({0: array})[0], copy=True))


def _cuda_time(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def bench_gpu(args: Any, factories: dict[str, Callable[[], nn.Module]], log: Callable[[str], None]) -> dict[str, Any]:
    """The 2D slide on the GPU: MONAI float32, the fast path, ``torch.compile`` and TensorRT rows (the last two when
    installed and working); labels compared with the float32 run. Skipped, with the reason, without CUDA.

    ``args.gpu_device`` may name ``cpu`` to check this code on a machine without a GPU (tests do).
    """
    from monai.inferers import SlidingWindowInferer

    from attnseg_monai.inferers import FastSlidingWindowInferer

    device = torch.device(args.gpu_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        message = "no CUDA device here: GPU rows (MONAI fp32, fast path, torch.compile, TensorRT) skipped"
        log(f"  gpu: {message}")
        return {"skipped": message}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (code check)"
    width, height = args.slide
    slide = torch.rand(1, 3, width, height, device=device)
    rows = []
    for net_name in args.networks:
        if net_name not in factories:
            continue
        torch.manual_seed(0)
        net = factories[net_name]().to(device).eval()
        fitted = fitted_grid(args.fast_roi, args.fast_overlap, int(getattr(net, "size_divisible_by", 16)))
        fast = FastSlidingWindowInferer(**fitted)
        fixed = FastSlidingWindowInferer(precision="fp32", engine="torch", **fitted)
        row: dict[str, Any] = {"network": net_name}
        labels: dict[str, torch.Tensor] = {}
        for key in args.gpu_variants:
            try:
                with torch.inference_mode():
                    if key == "monai-fp32":
                        inferer, runner = SlidingWindowInferer(roi_size=args.baseline_roi, overlap=0.25), net
                    elif key == "fast":
                        inferer, runner = fast, net
                    else:
                        prepared = fast.prepared_network(net, fast.policy_for(device))
                        window = (1, 3, *fast._grid(slide, net)[0])
                        runner = _compiled_runner(key, prepared, window, device)
                        inferer = fixed
                    warm = torch.rand(1, 3, *fast._grid(slide, net)[0], device=device)
                    start = time.perf_counter()
                    inferer(warm, runner)
                    warmup = time.perf_counter() - start
                    seconds, out = _cuda_time(lambda inferer=inferer, runner=runner: inferer(slide, runner), device)
                labels[key] = out.argmax(1)
                row[key] = {"seconds": seconds, "warmup_seconds": warmup}
                log(f"  gpu {net_name:24s} {key:12s} {seconds:8.3f} s")
            except Exception as exc:  # noqa: BLE001 - an optional row that does not work is recorded, not fatal
                row[key] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
                log(f"  gpu {net_name:24s} {key:12s} {row[key]['error'][:120]}")
        if "monai-fp32" in labels:
            for key, lab in labels.items():
                if key != "monai-fp32":
                    row[key]["agreement_with_fp32"] = float((lab == labels["monai-fp32"]).float().mean())
        rows.append(row)
    return {"device": name, "rows": rows}


def _compiled_runner(key: str, prepared: nn.Module, window: tuple[int, ...], device: torch.device) -> Callable:
    """``torch.compile`` (inductor) of the prepared network, or TensorRT through ``torch_tensorrt`` for ``window``.

    Raises:
        ImportError: ``torch_tensorrt`` is not installed (the row records it).
    """
    if key == "compile":
        compiled = torch.compile(prepared)
        return lambda x: compiled(x)
    if key == "tensorrt":
        import torch_tensorrt

        dtype = prepared.policy.dtype if hasattr(prepared, "policy") else torch.float32
        trt = torch_tensorrt.compile(
            prepared.module if hasattr(prepared, "module") else prepared,
            ir="dynamo",
            inputs=[torch_tensorrt.Input(window, dtype=torch.float32)],
            enabled_precisions={torch.float32, dtype},
        )
        return lambda x: trt(x).float()
    raise ValueError(f"unknown GPU variant {key!r}")


def gpu_markdown(gpu: dict[str, Any]) -> list[str]:
    """Lines of the GPU section (or the message that it was skipped)."""
    if not gpu:
        return []
    if "skipped" in gpu:
        return [f"**GPU**: {gpu['skipped']}.", ""]
    keys = [k for k in GPU_VARIANTS if any(k in r for r in gpu["rows"])]
    lines = [f"**GPU** ({gpu['device']}), the same slide, seconds (labels equal to MONAI fp32):", ""]
    lines += ["| network | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for r in gpu["rows"]:
        cells = []
        for k in keys:
            v = r.get(k, {})
            if "error" in v:
                cells.append(f"failed: {v['error'][:60]}")
            elif "seconds" in v:
                agree = v.get("agreement_with_fp32")
                cells.append(f"{v['seconds']:.3f}" + (f" ({100 * agree:.2f}%)" if agree is not None else ""))
            else:
                cells.append("–")
        lines.append(f"| `{r['network']}` | " + " | ".join(cells) + " |")
    return [*lines, ""]
