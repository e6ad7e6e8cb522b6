"""Sliding-window inference on the fast path: MONAI's window loop and stitch around a network prepared for the
device's best precision.

:class:`FastSlidingWindowInferer` is a :class:`monai.inferers.SlidingWindowInferer` (bundles, MONAI Label and the
engines use it the same way) that, before the window loop:

1. resolves the precision policy for the input's device (``precision="auto"``: bf16 + channels-last on AMX/AVX-512
   BF16 CPUs, bf16/fp16 on CUDA, float32 elsewhere; ``"fp32"`` is MONAI's path exactly);
2. prepares a copy of the network once (:func:`~attnseg_monai.precision.prepare_for_inference`: eval, batch norm
   folded, weights cast, channels-last) on the engine ``engine`` chooses (``"auto"``: OpenVINO on the CPU when the
   ``openvino`` extra is installed and the precision is ``"auto"``, torch elsewhere; see
   :mod:`attnseg_monai.precision.engine`) and reuses it until the network's weights change (a checkpoint is loaded,
   a training step runs), so a validation inferer always sees the current weights;
3. optionally (``fit_windows=True``) fits the window grid to the image: the fewest windows of at most
   ``roi_size`` that cover each axis with at least ``overlap * roi_size`` pixels of overlap, window sizes rounded
   up to the network's ``size_divisible_by``. With ``roi_size=512, overlap=0.125`` a 1720x1280 slide takes 4x3
   windows of 480x480 (1.25x the slide's pixels) instead of the 9x7 windows of 256x256 (1.88x) of MONAI's grid
   with ``roi_size=256, overlap=0.25``.

Windows go through the network in its dtype; every window's output is returned in float32, so MONAI's blending,
stitching and any softmax/argmax afterwards stay in float32.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data.utils import compute_importance_map
from monai.inferers import Inferer, SlidingWindowInferer
from monai.inferers.utils import sliding_window_inference
from monai.utils import BlendMode, ensure_tuple_rep
from torch import nn

from ..precision.engine import check_engine, prepare_engine
from ..precision.policy import PRECISIONS, PrecisionPolicy, resolve_policy
from ..precision.prepare import FastNetwork, sampling_dropout

__all__ = ["FastPathMixin", "FastSlidingWindowInferer", "fit_window_grid", "with_fast_path"]


def fit_window_grid(
    image_size: Sequence[int], max_roi: Sequence[int], min_overlap: Sequence[int], divisor: int = 1
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The window size and MONAI ``overlap`` fractions that cover ``image_size`` with the fewest windows.

    Per axis of size ``S``: the smallest number of windows ``n`` such that windows of size
    ``r = ceil((S + (n - 1) * min_overlap) / n)`` rounded up to ``divisor`` fit in ``max_roi``; the windows are then
    spread evenly (MONAI aligns the last one with the end). An axis no longer than ``max_roi`` is one window of
    ``S`` rounded up to ``divisor`` (MONAI pads the image).

    Args:
        image_size: spatial size of the image.
        max_roi: largest window per axis (rounded down to ``divisor``).
        min_overlap: least overlap between neighbouring windows per axis, in pixels.
        divisor: every window size is a multiple of it (the network's ``size_divisible_by``).

    Raises:
        ValueError: if the sequences differ in length, or a size is not positive, or ``max_roi`` is smaller than
            ``divisor``, or ``min_overlap`` is not smaller than ``max_roi``.

    Example::

        >>> fit_window_grid((1720, 1280), (512, 512), (64, 64), 16)   # 4 x 3 windows of 480 x 480
        ((480, 480), (0.136..., 0.165...))
    """
    if not (len(image_size) == len(max_roi) == len(min_overlap)):
        raise ValueError("image_size, max_roi and min_overlap must have one entry per spatial axis.")
    if divisor < 1:
        raise ValueError(f"divisor must be a positive integer, got {divisor}.")
    rois: list[int] = []
    overlaps: list[float] = []
    for size, limit, ov in zip(image_size, max_roi, min_overlap):
        size, limit, ov = int(size), (int(limit) // divisor) * divisor, max(int(ov), 0)
        if size < 1 or limit < divisor:
            raise ValueError(
                f"image sizes must be positive and max_roi at least the divisor {divisor}, got {size} and {limit}."
            )
        if ov >= limit:
            raise ValueError(f"min_overlap ({ov}) must be smaller than the window ({limit}).")
        if size <= limit:
            rois.append(math.ceil(size / divisor) * divisor)
            overlaps.append(0.0)
            continue
        n = 2
        while True:
            r = math.ceil(math.ceil((size + (n - 1) * ov) / n) / divisor) * divisor
            if r <= limit:
                break
            n += 1
        stride = math.ceil((size - r) / (n - 1))
        rois.append(r)
        overlaps.append(max(0.0, 1.0 - (stride + 0.5) / r))  # int(r * (1 - overlap)) == stride in MONAI
    return tuple(rois), tuple(overlaps)


class FastPathMixin:
    """Runs an inferer's network on the fast path: mixed into an inferer class, its ``__call__`` swaps the network
    for a prepared copy (cached until the weights change) before the inferer's own ``__call__`` runs.

    Attributes read: ``precision`` (one of :data:`~attnseg_monai.precision.PRECISIONS`), ``fold_batch_norm`` and
    ``engine`` (one of :data:`~attnseg_monai.precision.engine.ENGINES`).
    """

    precision: str = "auto"
    fold_batch_norm: bool = True
    engine: str = "auto"

    def policy_for(self, device: str | torch.device) -> PrecisionPolicy:
        """The precision policy used on ``device`` (resolved once per device type)."""
        policies = self.__dict__.setdefault("_fast_policies", {})
        key = torch.device(device).type
        if key not in policies:
            policies[key] = resolve_policy(self.precision, device, fold_batch_norm=self.fold_batch_norm)
        return policies[key]

    @staticmethod
    def _fingerprint(net: nn.Module) -> tuple:
        tensors = list(net.parameters()) + list(net.buffers())
        return tuple((id(t), t._version, t.dtype, t.device) for t in tensors)

    def uses_prepared(self, policy: PrecisionPolicy) -> bool:
        """Whether an eval-mode network runs as a prepared copy under ``policy`` (not as it is): any policy but the
        float32 reference, and the reference too where the engine may be OpenVINO (``engine="openvino"``, or
        ``"auto"`` with ``precision="auto"`` on a CPU: OpenVINO's float32 beats torch's)."""
        may_convert = self.engine == "openvino" or (self.engine == "auto" and self.precision == "auto")
        return not policy.is_reference or (may_convert and policy.device_type == "cpu")

    def prepare(self, network: nn.Module, policy: PrecisionPolicy) -> FastNetwork:
        """A new prepared copy of ``network`` for ``policy`` on this inferer's engine (not cached)."""
        return prepare_engine(network, policy, check_engine(self.engine), self.precision)

    def prepared_network(self, network: nn.Module, policy: PrecisionPolicy) -> FastNetwork:
        """The prepared copy of ``network`` for ``policy``, rebuilt when its weights changed since the last call."""
        fingerprint = (policy, self.engine, self._fingerprint(network), sampling_dropout(network))
        cached = self.__dict__.get("_fast_prepared")
        if cached is not None:
            ref, old, fast = cached
            if ref() is network and old == fingerprint:
                return fast
        fast = self.prepare(network, policy)
        self.__dict__["_fast_prepared"] = (weakref.ref(network), fingerprint, fast)
        return fast

    def fast_network(self, inputs: torch.Tensor, network: Callable[..., Any]) -> Callable[..., Any]:
        """What the inferer should call instead of ``network``: the prepared copy of an ``nn.Module`` (unless the
        policy is the float32 reference), or ``network`` itself when it is a
        :class:`~attnseg_monai.precision.FastNetwork` or a plain callable (which then owns its precision, as
        ``BundlePredictor``'s forward does). A network in training mode runs as it is: whoever put it there wants
        its dropout and batch statistics, which the prepared copy (batch norm folded, eval mode) would remove. An
        eval-mode network whose dropout layers sample (Monte Carlo dropout, as MONAI Label's epistemic scoring asks of
        the bundles) gets a prepared copy whose dropout layers sample too (on torch: OpenVINO would not sample)."""
        policy = self.policy_for(inputs.device)
        if isinstance(network, nn.Module) and network.training:
            return network
        if isinstance(network, nn.Module) and not isinstance(network, FastNetwork) and self.uses_prepared(policy):
            return self.prepared_network(network, policy)
        return network

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return super().__call__(inputs, self.fast_network(inputs, network), *args, **kwargs)  # type: ignore[misc]


def with_fast_path(
    inferer: Inferer, precision: str = "auto", fold_batch_norm: bool = True, engine: str = "auto"
) -> Inferer:
    """``inferer`` on the fast path: an object of a subclass of its class (so ``isinstance`` checks and its
    attributes stay as they were) whose ``__call__`` runs the network prepared for the device's precision.

    Use it for inferers other than MONAI's sliding window, e.g. the slab-wise 3D inferer of the CT bundles::

        "inferer": {"_target_": "attnseg_monai.inferers.with_fast_path", "precision": "@precision",
                    "inferer": {"_target_": "attnseg_monai.inferers.SlabSlidingWindowInferer", ...}}

    Args:
        inferer: any MONAI ``Inferer`` whose ``__call__(inputs, network, ...)`` calls ``network`` on tensors.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        fold_batch_norm: fold batch norm into convolutions on the reduced-precision paths.
        engine: ``"auto"``, ``"torch"`` or ``"openvino"`` (see :mod:`attnseg_monai.precision.engine`).

    Raises:
        ValueError: on an unknown ``precision`` or ``engine``, or an ``inferer`` that is not callable.

    Examples::

        >>> from attnseg_monai.inferers import SlabSlidingWindowInferer, SliceWiseInferer
        >>> fast3d = with_fast_path(SlabSlidingWindowInferer(roi_size=(96, 96, 64), output="labels"))
        >>> fast2d = with_fast_path(monai.inferers.SimpleInferer(), precision="bf16")
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    check_engine(engine)
    if not callable(inferer):
        raise ValueError(f"with_fast_path needs an inferer (a callable), got {type(inferer).__name__}.")
    if isinstance(inferer, FastPathMixin):
        inferer.precision, inferer.fold_batch_norm, inferer.engine = precision, bool(fold_batch_norm), engine
        inferer.__dict__.pop("_fast_policies", None)
        return inferer
    cls = type(inferer)
    fast_cls = _FAST_CLASSES.get(cls)
    if fast_cls is None:
        fast_cls = type("Fast" + cls.__name__, (FastPathMixin, cls), {"__module__": __name__})
        _FAST_CLASSES[cls] = fast_cls
    fast = object.__new__(fast_cls)
    fast.__dict__.update(inferer.__dict__)
    fast.precision, fast.fold_batch_norm, fast.engine = precision, bool(fold_batch_norm), engine
    return fast


_FAST_CLASSES: dict[type, type] = {}


class FastSlidingWindowInferer(FastPathMixin, SlidingWindowInferer):
    """MONAI's sliding-window inferer on the device's fastest precision, with an optional fitted window grid.

    Usable from a bundle config by its full path::

        "inferer": {"_target_": "attnseg_monai.inferers.FastSlidingWindowInferer", "roi_size": [512, 512],
                    "sw_batch_size": 1, "overlap": 0.125, "mode": "gaussian", "precision": "@precision",
                    "engine": "@engine", "fit_windows": true}

    Args:
        roi_size: window size (with ``fit_windows``: the largest window).
        sw_batch_size: windows per network call.
        overlap: overlap fraction of neighbouring windows (with ``fit_windows``: the least overlap, as a fraction
            of ``roi_size``).
        mode: ``"constant"`` or ``"gaussian"`` blending.
        precision: ``"auto"``, ``"fp32"`` (MONAI's float32 path, untouched network), ``"bf16"`` or ``"fp16"``;
            see :mod:`attnseg_monai.precision.policy`.
        fold_batch_norm: fold batch norm into convolutions on the reduced-precision paths.
        engine: what runs the prepared network: ``"auto"`` (OpenVINO on the CPU when installed and ``precision`` is
            ``"auto"``, else torch), ``"torch"`` or ``"openvino"``; see :mod:`attnseg_monai.precision.engine`.
        fit_windows: fit the window grid to each image (see the module docstring).
        size_divisible_by: window sizes are multiples of it with ``fit_windows`` (default: the network's
            ``size_divisible_by`` attribute; for a plain callable, the largest power of two up to 32 that divides
            every entry of ``roi_size``).
        kwargs: the other arguments of :class:`monai.inferers.SlidingWindowInferer` (``sigma_scale``,
            ``padding_mode``, ``cval``, ``sw_device``, ``device``, ``progress``, ``cpu_thresh``, ...).

    Raises:
        ValueError: on an unknown ``precision`` or ``engine``, or a non-positive ``sw_batch_size``.

    Examples::

        >>> inferer = FastSlidingWindowInferer(roi_size=(512, 512), overlap=0.125, fit_windows=True)
        >>> probs = inferer(torch.rand(1, 3, 1280, 1720), HanNet(2, 3, 2).eval())        # 2D slide
        >>> inferer3d = FastSlidingWindowInferer(roi_size=(96, 96, 96), sw_batch_size=1, precision="bf16")
        >>> logits = inferer3d(torch.rand(1, 1, 160, 160, 64), HanNet(3, 1, 2, features=(8, 16, 32)).eval())
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.GAUSSIAN,
        *,
        precision: str = "auto",
        fold_batch_norm: bool = True,
        engine: str = "auto",
        fit_windows: bool = False,
        size_divisible_by: int | None = None,
        **kwargs: Any,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        check_engine(engine)
        if not isinstance(sw_batch_size, int) or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be a positive integer, got {sw_batch_size!r}.")
        super().__init__(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode, **kwargs)
        self.precision = precision
        self.fold_batch_norm = bool(fold_batch_norm)
        self.engine = engine
        self.fit_windows = bool(fit_windows)
        self.size_divisible_by = size_divisible_by
        self.last_grid: tuple[tuple[int, ...], tuple[float, ...]] | None = None
        self._weight_maps: dict[tuple, torch.Tensor] = {}

    def _grid(self, inputs: torch.Tensor, network: Any) -> tuple[Sequence[int] | int, Sequence[float] | float]:
        if not self.fit_windows:
            return self.roi_size, self.overlap
        spatial = tuple(int(s) for s in inputs.shape[2:])
        dims = len(spatial)
        roi = ensure_tuple_rep(self.roi_size, dims)
        roi = tuple(s if r is None or int(r) <= 0 else int(r) for r, s in zip(roi, spatial))
        overlap = ensure_tuple_rep(self.overlap, dims)
        divisor = self.size_divisible_by or int(getattr(network, "size_divisible_by", 0) or 0)
        if divisor < 1:  # a plain callable: the largest power of two (up to 32) that divides the configured windows
            divisor = 32
            while divisor > 1 and any(r % divisor for r in roi):
                divisor //= 2
        min_overlap = tuple(int(round(o * r)) for o, r in zip(overlap, roi))
        max_roi = tuple(max(r, divisor) for r in roi)
        grid = fit_window_grid(spatial, max_roi, min_overlap, divisor)
        self.last_grid = grid
        return grid

    def _weight_map(self, roi: Sequence[int], device: torch.device) -> torch.Tensor | None:
        if self.roi_weight_map is not None and tuple(roi) == tuple(ensure_tuple_rep(self.roi_size, len(roi))):
            return self.roi_weight_map
        key = (tuple(roi), str(device))
        if key not in self._weight_maps:
            if len(self._weight_maps) > 8:
                self._weight_maps.clear()
            self._weight_maps[key] = compute_importance_map(
                tuple(roi), mode=self.mode, sigma_scale=self.sigma_scale, device=device
            )
        return self._weight_maps[key]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Sliding-window inference of ``inputs`` with ``network`` on the fast path.

        ``network`` may be an ``nn.Module`` (prepared here for the policy), a
        :class:`~attnseg_monai.precision.FastNetwork` (used as it is) or any callable (used as it is: it owns its
        precision, as ``BundlePredictor`` does).
        """
        net = self.fast_network(inputs, network)
        roi, overlap = self._grid(inputs, network)
        device = kwargs.pop("device", self.device)
        buffer_steps = kwargs.pop("buffer_steps", self.buffer_steps)
        buffer_dim = kwargs.pop("buffer_dim", self.buffer_dim)
        if device is None and self.cpu_thresh is not None and inputs.shape[2:].numel() > self.cpu_thresh:
            device = "cpu"
        weight_map = None
        if isinstance(roi, Sequence) and all(int(r) > 0 for r in roi):
            sw_device = self.sw_device if self.sw_device is not None else inputs.device
            weight_map = self._weight_map(roi, torch.device(sw_device))
        return sliding_window_inference(
            inputs,
            roi,
            self.sw_batch_size,
            net,
            overlap,
            self.mode,
            self.sigma_scale,
            self.padding_mode,
            self.cval,
            self.sw_device,
            device,
            self.progress,
            weight_map,
            None,
            buffer_steps,
            buffer_dim,
            self.with_coord,
            *args,
            **kwargs,
        )
