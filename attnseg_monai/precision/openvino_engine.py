"""OpenVINO as an engine of the fast path: convert once, check, cache on disk, compile per window shape.

:class:`OpenVINONetwork` is a :class:`~.prepare.FastNetwork` (so every inferer, the ensemble and the predictor take it
where they take the torch one) whose ``forward`` runs OpenVINO on CPU tensors:

1. **Convert** (first call): ``openvino.convert_model(module, example_input=...)`` on a float32 eval-mode copy of the
   network as given (not the torch-prepared copy), with the batch and spatial sizes dynamic, so one conversion
   serves every window shape.
2. **Check**: the converted model, compiled in float32, must reproduce torch's float32 output on a random input of
   *another* shape than the one it was traced with (largest difference at most :data:`CHECK_TOLERANCE` of the
   largest output). A network whose dynamic conversion does not (a size frozen at tracing) is converted again for
   each window shape with that shape fixed, and checked at it; one that still differs runs on torch.
3. **Cache on disk**: the converted model (OpenVINO IR, float32 weights) is saved under :func:`openvino_cache_dir`
   (``$ATTNSEG_OPENVINO_CACHE``, default ``~/.cache/attnseg_monai/openvino``; ``off`` disables it), keyed by a
   fingerprint of the weights, the modules' settings and source files, the input channels and dimensions and the
   OpenVINO/torch versions (:func:`network_fingerprint`): the next process loads it in milliseconds instead of
   converting for seconds, and new weights make a new entry. A conversion that failed is remembered there too (the
   same warning, no second attempt) until OpenVINO is upgraded.
4. **Compile per window shape** for the CPU with OpenVINO's default performance hint (latency) and precision hint
   (bfloat16 on AMX / AVX-512-BF16 CPUs, float32 elsewhere; ``hint`` overrides it), as many threads as torch uses;
   the last :data:`MAX_COMPILED` shapes stay compiled.

Anything that goes wrong (an op OpenVINO cannot convert, a compile error, a run-time error, a failed check) logs one
warning naming the network and the reason, and the network runs on torch from then on: never a crash or a wrong
result. Attention maps, calls with extra arguments and non-CPU tensors always run on torch.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io.atomic import atomic_write_json
from .prepare import FastNetwork

__all__ = [
    "CACHE_ENV",
    "CHECK_TOLERANCE",
    "ConversionFailure",
    "EngineFailure",
    "MAX_COMPILED",
    "OpenVINONetwork",
    "network_fingerprint",
    "openvino_cache_dir",
]

logger = logging.getLogger(__name__)

#: environment variable naming the folder of converted models (``off``, ``0`` or empty: no disk cache)
CACHE_ENV = "ATTNSEG_OPENVINO_CACHE"
#: largest difference to torch's float32 output allowed in the check, as a fraction of the largest output
CHECK_TOLERANCE = 1e-2
#: window shapes kept compiled per network
MAX_COMPILED = 8
#: version of what the cache holds (bump when an entry's meaning changes)
CACHE_FORMAT = 2  # 2: the network as given is converted, not the torch-prepared copy

_PRIMITIVES = (bool, int, float, str, type(None))
_SOURCE_DIGESTS: dict[type, str] = {}
_CORE: Any = None
_CORE_LOCK = threading.Lock()


class EngineFailure(RuntimeError):
    """OpenVINO cannot run the network (conversion, check, compilation or run): torch runs it instead."""


class ConversionFailure(EngineFailure):
    """``openvino.convert_model`` failed (an op without a conversion rule, a trace that fails): fixing the shapes
    would not help."""


def _core() -> Any:
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def openvino_version() -> str:
    """The installed OpenVINO's version string (``""`` when it is not installed)."""
    try:
        import openvino as ov
    except Exception:  # noqa: BLE001
        return ""
    return str(ov.__version__)


def openvino_cache_dir() -> Path | None:
    """The folder of converted models: ``$ATTNSEG_OPENVINO_CACHE`` (``off``/``0``/empty: ``None``, no disk cache),
    else ``$XDG_CACHE_HOME/attnseg_monai/openvino`` (default ``~/.cache/attnseg_monai/openvino``)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in ("", "0", "off", "none", "false"):
            return None
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "attnseg_monai" / "openvino"


def _source_digest(cls: type) -> str:
    """sha256 of the file that defines ``cls`` (``""`` when there is none): a changed ``forward`` is a new model."""
    if cls not in _SOURCE_DIGESTS:
        digest = ""
        try:
            path = inspect.getsourcefile(cls)
            if path:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except (TypeError, OSError):
            pass
        _SOURCE_DIGESTS[cls] = digest
    return _SOURCE_DIGESTS[cls]


def _settings(module: nn.Module) -> list[tuple[str, str]]:
    """The public plain-valued attributes of ``module`` (switches such as ``deep_supervision``, modes, sizes)."""
    out = []
    for key, value in sorted(vars(module).items()):
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, _PRIMITIVES) or (
            isinstance(value, (tuple, list)) and all(isinstance(v, _PRIMITIVES) for v in value)
        ):
            out.append((key, repr(value)))
    return out


def network_fingerprint(net: nn.Module, in_channels: int, spatial_dims: int, *extra: Any) -> str:
    """A sha256 hex digest that changes whenever the converted model would: every parameter's and buffer's values,
    names, dtypes and shapes; every module's class, the digest of the file defining it and its plain settings; the
    input channels and spatial dimensions; the OpenVINO and torch versions and :data:`CACHE_FORMAT`; ``extra``."""
    h = hashlib.sha256()
    head = [CACHE_FORMAT, openvino_version(), torch.__version__, int(in_channels), int(spatial_dims), list(extra)]
    h.update(json.dumps(head, default=str).encode())
    for name, module in net.named_modules():
        cls = type(module)
        h.update(f"|{name}|{cls.__module__}.{cls.__qualname__}|{_source_digest(cls)}|{_settings(module)}".encode())
    tensors = list(net.named_parameters(remove_duplicate=False)) + list(net.named_buffers(remove_duplicate=False))
    for name, tensor in tensors:
        t = tensor.detach()
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _short_error(exc: BaseException, limit: int = 300) -> str:
    """``exc`` in one line: its type and the informative lines of its message (OpenVINO's messages start with the
    source location of a check, then e.g. ``-- No conversion rule found for operations: aten::i0``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("Check '") and "FrontEnd API failed" not in line]
    text = " ".join(kept or lines)
    return f"{type(exc).__name__}: {text[:limit]}" + ("..." if len(text) > limit else "")


def _divisor(net: Any, spatial: tuple[int, ...]) -> int:
    """The network's ``size_divisible_by``, else the largest power of two up to 32 dividing every size."""
    divisor = int(getattr(net, "size_divisible_by", 0) or 0)
    if divisor >= 1:
        return divisor
    divisor = 32
    while divisor > 1 and any(s % divisor for s in spatial):
        divisor //= 2
    return divisor


def _flatten(out: Any) -> tuple[Any, list[torch.Tensor]]:
    """``(structure, tensors)`` of a network output: a tensor, or a tuple/list of tensors.

    Raises:
        EngineFailure: for any other output (dicts, nested containers).
    """
    if isinstance(out, torch.Tensor):
        return "tensor", [out]
    if isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return [type(out).__name__, len(out)], list(out)
    raise EngineFailure(f"its output is a {type(out).__name__}, not a tensor or a tuple/list of tensors")


def _unflatten(structure: Any, tensors: list[torch.Tensor]) -> Any:
    if structure == "tensor":
        return tensors[0]
    kind, _ = structure
    return tuple(tensors) if kind == "tuple" else list(tensors)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest ``|a - b|`` as a fraction of the largest ``|b|`` (``inf`` on a shape mismatch or non-finite values)."""
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    diff = (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
    scale = max(b.float().abs().max().item() if b.numel() else 0.0, 1e-6)
    return diff / scale if np.isfinite(diff) else float("inf")


class OpenVINONetwork(FastNetwork):
    """A prepared network that runs OpenVINO on CPU tensors and its torch copy for everything else (see the module
    docstring). Built by :func:`~.engine.prepare_engine`; conversion happens at the first call.

    Args:
        prepared: the torch :class:`FastNetwork` of the same network and policy (the fallback, and the attention
            maps).
        network: the network as given (a float32 eval-mode copy of it is converted).
        hint: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"f32"``, ``"bf16"``, ``"f16"``); ``None``: its default.
        name: the network's name in messages.
        cache_dir: folder of converted models (default :func:`openvino_cache_dir`; ``None`` there: no disk cache).

    Attributes:
        engine: ``"openvino"``, or ``"torch"`` once OpenVINO failed on this network.
        engine_error: why OpenVINO failed (``None`` while it runs).
        mode: ``"dynamic"`` (one conversion for every shape), ``"static"`` (one per shape) or ``None`` before the
            first call.
        cache_hits: converted models loaded from the disk cache instead of converted.

    Example::

        >>> fast = prepare_engine(HanNet(2, 3, 3).eval(), resolve_policy("auto"), engine="openvino")
        >>> fast(torch.rand(1, 3, 256, 256)).shape       # converted, checked, cached, compiled for 1x3x256x256
        torch.Size([1, 3, 256, 256])
    """

    def __init__(
        self,
        prepared: FastNetwork,
        network: nn.Module,
        hint: str | None = None,
        name: str = "network",
        cache_dir: str | os.PathLike | None | bool = True,
    ) -> None:
        super().__init__(prepared.module, prepared.policy, prepared.batch_norms_folded)
        # the network as given, float32, eval mode: not the torch-prepared copy, whose rewrites serve torch's kernels
        # (instance norm as GroupNorm(C, C) made OpenVINO 1.75x slower on a MONAI BasicUNet window; OpenVINO folds
        # batch norm and picks its own layout and precision)
        wrapped = isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel))
        net = network.module if wrapped else network
        with torch.inference_mode(False), torch.no_grad():
            source = copy.deepcopy(net).float().eval()
        object.__setattr__(self, "_source", source)  # not a submodule: no second copy in state_dict()
        self.hint = hint
        self.name = name
        self.cache_dir = openvino_cache_dir() if cache_dir is True else (Path(cache_dir) if cache_dir else None)
        self.engine_error: str | None = None
        self.mode: str | None = None
        self.cache_hits = 0
        self._structure: Any = "tensor"
        self._dynamic: Any = None
        self._static: dict[tuple[int, ...], Any] = {}
        self._compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ state
    @property
    def engine(self) -> str:
        """``"openvino"`` while OpenVINO runs the network, ``"torch"`` after it failed."""
        return "torch" if self.engine_error is not None else "openvino"

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles carry no compiled OpenVINO objects
        state = self.__dict__.copy()
        state.update(_dynamic=None, _static={}, _compiled=OrderedDict(), mode=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__["_lock"] = threading.RLock()

    def fall_back(self, reason: str) -> None:
        """Run on torch from now on; logs one warning naming the network and ``reason``."""
        if self.engine_error is None:
            self.engine_error = reason
            logger.warning("OpenVINO cannot run %s, so torch runs it: %s", self.name, reason)
        self._compiled.clear()

    # ------------------------------------------------------------------ running
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if (
            self.engine_error is None
            and not args
            and not kwargs
            and isinstance(x, torch.Tensor)
            and x.device.type == "cpu"
            and x.is_floating_point()
        ):
            try:
                return self._infer(x)
            except Exception as exc:  # noqa: BLE001 - any engine failure: torch runs the network, never a crash
                self.fall_back(str(exc) if isinstance(exc, EngineFailure) else _short_error(exc))
        return super().forward(x, *args, **kwargs)

    def _infer(self, x: torch.Tensor) -> Any:
        with self._lock:
            request = self._request(tuple(int(s) for s in x.shape))
            array = x.detach().to(torch.float32).contiguous().numpy()
            request.infer({0: array})
            outs = [
                torch.from_numpy(np.array(request.get_output_tensor(i).data, dtype=np.float32, copy=True))
                for i in range(len(request.model_outputs))
            ]
        return _unflatten(self._structure, outs)

    def _config(self, hint: str | None) -> dict[str, Any]:
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": max(1, torch.get_num_threads())}
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        return config

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        model = self._model_for(shape)
        compiled = _core().compile_model(model, "CPU", self._config(self.hint))
        request = compiled.create_infer_request()
        self._compiled[shape] = request
        while len(self._compiled) > MAX_COMPILED:
            self._compiled.popitem(last=False)
        return request

    @staticmethod
    def _reshaped(model: Any, shape: tuple[int, ...]) -> Any:
        import openvino as ov

        fixed = model.clone()
        fixed.reshape({fixed.inputs[0]: ov.PartialShape(list(shape))})
        return fixed

    def _model_for(self, shape: tuple[int, ...]) -> Any:
        """The OpenVINO model for inputs of ``shape`` (converted or loaded on first use, see the module docstring)."""
        if self.mode is None:
            try:
                self._dynamic = self._load_or_convert(shape, dynamic=True)
                self.mode = "dynamic"
            except ConversionFailure:
                raise
            except EngineFailure as exc:
                logger.info("%s: no OpenVINO model for every shape (%s); converting one per shape", self.name, exc)
                self.mode = "static"
        if self.mode == "dynamic":
            return self._reshaped(self._dynamic, shape)
        if shape not in self._static:
            self._static[shape] = self._load_or_convert(shape, dynamic=False)
        return self._static[shape]

    # ------------------------------------------------------------------ conversion, check, disk cache
    def _key(self, shape: tuple[int, ...], dynamic: bool) -> str:
        what = ["dynamic"] if dynamic else ["static", list(shape)]
        return network_fingerprint(self._source, shape[1], len(shape) - 2, *what)

    def _load_or_convert(self, shape: tuple[int, ...], dynamic: bool) -> Any:
        key = self._key(shape, dynamic)
        entry = _read_entry(self.cache_dir, key)
        if entry is not None:
            model, meta = entry
            if meta.get("failed"):
                error = ConversionFailure if meta.get("conversion_failed") else EngineFailure
                raise error(f"{meta['failed']} (remembered in {self.cache_dir}; delete {key}.json to retry)")
            self._structure = meta.get("outputs", "tensor")
            self.cache_hits += 1
            return model
        try:
            model = self._convert(shape, dynamic)
            meta = self._check(model, shape, dynamic)
        except EngineFailure as exc:
            _write_failure(self.cache_dir, key, self.name, str(exc), isinstance(exc, ConversionFailure))
            raise
        self._structure = meta["outputs"]
        _write_entry(self.cache_dir, key, model, meta)
        return model

    def _convert(self, shape: tuple[int, ...], dynamic: bool) -> Any:
        import openvino as ov

        spec = [-1, shape[1]] + [-1] * (len(shape) - 2) if dynamic else list(shape)
        gen = torch.Generator().manual_seed(0)
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = torch.rand(shape, generator=gen)
            try:
                return ov.convert_model(self._source, example_input=example, input=[ov.PartialShape(spec)])
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - an op OpenVINO cannot convert, a trace that fails, ...
                raise ConversionFailure(f"conversion failed: {_short_error(exc)}") from exc
            finally:  # a failed conversion sets the root logger to ERROR and adds a handler (OpenVINO 2026.4)
                root.setLevel(level)
                root.handlers[:] = handlers

    def _check(self, model: Any, shape: tuple[int, ...], dynamic: bool) -> dict[str, Any]:
        """Compare the converted model (float32) with torch's float32 output; the check's record for the cache.

        Raises:
            EngineFailure: when they differ (or the shapes disagree, or torch cannot run the check's input).
        """
        spatial = tuple(shape[2:])
        if dynamic:  # another shape than the trace's: sizes frozen at tracing show here
            step = _divisor(self, spatial)
            check_shape = (1, shape[1], *(s + step for s in spatial))
        else:
            check_shape = shape
        gen = torch.Generator().manual_seed(1)
        with torch.inference_mode(False), torch.no_grad():
            x = torch.rand(check_shape, generator=gen)
            try:
                reference = self._source(x)
            except Exception as exc:  # noqa: BLE001 - the network does not take that shape
                raise EngineFailure(
                    f"torch fails at the check's shape {list(check_shape)}: {_short_error(exc)}"
                ) from exc
        structure, expected = _flatten(reference)
        try:  # a size frozen at tracing often fails here, in OpenVINO's shape inference
            compiled = _core().compile_model(self._reshaped(model, check_shape), "CPU", self._config("f32"))
            results = compiled({0: x.numpy()})
            got = [torch.from_numpy(np.asarray(results[i])) for i in range(len(compiled.outputs))]
        except Exception as exc:  # noqa: BLE001
            raise EngineFailure(f"the converted model fails at shape {list(check_shape)}: {_short_error(exc)}") from exc
        if len(got) != len(expected):
            raise EngineFailure(f"{len(got)} outputs where torch returns {len(expected)}")
        errors = [_relative_error(g, e) for g, e in zip(got, expected)]
        worst = max(errors)
        if not worst <= CHECK_TOLERANCE:
            raise EngineFailure(
                f"its float32 output differs from torch's by {worst:.3g} of the largest value at shape "
                f"{list(check_shape)} (allowed {CHECK_TOLERANCE})"
            )
        return {
            "format": CACHE_FORMAT,
            "network": self.name,
            "mode": "dynamic" if dynamic else "static",
            "traced_shape": list(shape),
            "checked_shape": list(check_shape),
            "max_relative_error": worst,
            "outputs": structure,
            "openvino": openvino_version(),
            "torch": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path, Path]:
    folder = cache_dir / key[:2]
    return folder / f"{key}.xml", folder / f"{key}.bin", folder / f"{key}.json"


def _read_entry(cache_dir: Path | None, key: str) -> tuple[Any, dict[str, Any]] | None:
    """``(model or None, record)`` of a cached conversion; ``None`` when there is none (or it cannot be read)."""
    if cache_dir is None:
        return None
    xml, binary, record = _paths(cache_dir, key)
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("failed"):
        return None, meta
    try:
        return _core().read_model(str(xml), str(binary)), meta
    except Exception as exc:  # noqa: BLE001 - a damaged entry is converted again
        logger.info("cached OpenVINO model %s not readable (%s): converting again", xml, exc)
        return None


def _write_entry(cache_dir: Path | None, key: str, model: Any, meta: dict[str, Any]) -> None:
    """Save ``model`` (float32 weights) and its record; the record is written last, so it marks a whole entry."""
    if cache_dir is None:
        return
    import openvino as ov

    xml, binary, record = _paths(cache_dir, key)
    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=xml.parent))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            os.replace(tmp / "model.bin", binary)
            os.replace(tmp / "model.xml", xml)
            atomic_write_json(record, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        logger.info("OpenVINO model not cached in %s: %s", cache_dir, exc)


def _write_failure(cache_dir: Path | None, key: str, name: str, reason: str, conversion: bool) -> None:
    """Remember that ``key`` cannot be converted (until OpenVINO, torch or the network change: all are in the key)."""
    if cache_dir is None:
        return
    _, _, record = _paths(cache_dir, key)
    meta = {
        "format": CACHE_FORMAT,
        "network": name,
        "failed": reason,
        "conversion_failed": conversion,
        "openvino": openvino_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        atomic_write_json(record, meta)
    except OSError as exc:
        logger.info("OpenVINO failure not recorded in %s: %s", cache_dir, exc)
