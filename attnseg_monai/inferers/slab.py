"""Memory-bounded sliding-window inference: the stitch is streamed one slab at a time along one spatial axis.

MONAI's :class:`~monai.inferers.SlidingWindowInferer` allocates the blended output of the whole volume in the
input's float dtype, ``(B, C, *spatial)``, plus a count map of the same spatial size, before it knows a single
label. For a 512x512x200 CT and 14 classes that is ~3.8 GB of resident memory before the network runs (DESIGN.md
section 7), and the usual ``AsDiscrete(argmax=True)`` afterwards adds an int64 volume on top.

:class:`SlabSlidingWindowInferer` runs the *same* window grid (same positions, same ``overlap``, the same
``constant``/``gaussian`` importance map from :func:`monai.data.utils.compute_importance_map`) but visits the
windows ordered along one spatial axis and blends them into a ring buffer that holds only one slab: one row of
windows, ``roi_size[axis]`` planes deep. As soon as no remaining window can touch a plane, the plane is final: it
is divided by its count, turned into labels (argmax) or probabilities (softmax), written into a preallocated
output, and its buffer space is reused. Each window is evaluated exactly once and every voxel receives the same
weighted sum as in MONAI's stitch, so the labels equal MONAI's ``SlidingWindowInferer`` + argmax (no seams, no
halo to tune); only the order of the floating-point additions can differ (by an ulp) when the slab axis is not
the first spatial axis.

Memory (bytes, float32 inputs): slab buffer ``(C + 1) * roi[axis] * prod(other spatial sizes) * 4``; network
batch ``sw_batch_size * (C_in + C) * prod(roi) * 4``; output ``prod(spatial)`` for ``"labels"`` (uint8; int16
above 256 classes), ``C * prod(spatial) * 2`` for ``"probabilities"`` (float16), ``C * prod(spatial) * 4`` for
``"logits"``. :meth:`SlabSlidingWindowInferer.estimate_memory` computes these figures for a given volume.

:class:`SliceWiseInferer` applies a 2D network slice by slice to a 3D volume (MONAI's
:class:`~monai.inferers.SliceInferer` does the same with a full float32 stitch): the slices are batched
``sw_batch_size`` windows at a time and each finished slice is argmaxed straight into a uint8 label volume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import Inferer
from monai.utils import BlendMode, PytorchPadMode, ensure_tuple_rep, fall_back_tuple, look_up_option

__all__ = [
    "class_labels",
    "class_probabilities",
    "OUTPUT_KINDS",
    "SliceWiseInferer",
    "SlabSlidingWindowInferer",
    "label_dtype",
]

#: what the inferers can return: uint8/int16 labels, float16 probabilities, or float32 averaged logits
OUTPUT_KINDS = ("labels", "probabilities", "logits")

_FINALIZE_PLANES = 8  # planes post-processed per step; bounds the argmax/softmax temporaries


def class_probabilities(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Class probabilities of logits along the channel axis ``dim``: softmax, or the sigmoid of a single channel."""
    return torch.sigmoid(logits) if logits.shape[dim] == 1 else torch.softmax(logits, dim=dim)


def class_labels(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Class labels of logits along ``dim`` (kept, size 1): the argmax, or ``logit > 0`` for a single channel, in
    :func:`label_dtype`."""
    if logits.shape[dim] == 1:
        return (logits > 0).to(torch.uint8)
    # max().indices is the first maximum like argmax, and several times faster on strided CPU blocks
    return logits.max(dim=dim, keepdim=True).indices.to(label_dtype(logits.shape[dim]))


def label_dtype(num_classes: int) -> torch.dtype:
    """The smallest integer dtype that holds the labels ``0 .. num_classes - 1`` (uint8 up to 256 classes).

    Raises:
        ValueError: if ``num_classes`` is not a positive int.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}.")
    if num_classes <= 256:
        return torch.uint8
    if num_classes <= 32768:
        return torch.int16
    return torch.int32


@dataclass(frozen=True)
class _Plan:
    """Window grid and slab geometry of one (padded) volume."""

    spatial: tuple[int, ...]  # input spatial size
    roi: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # (before, after) padding per spatial axis, as MONAI pads small inputs
    image_size: tuple[int, ...]  # padded spatial size
    axis: int  # slab axis, 0-based spatial index
    slices: tuple[tuple[slice, ...], ...]  # window slices in visiting order (sorted along ``axis``)
    chunks: tuple[tuple[int, ...], ...]  # indices into ``slices`` evaluated together
    capacity: int  # slab depth in planes along ``axis``


def _ring(start: int, length: int, capacity: int) -> list[tuple[slice, slice]]:
    """Split planes ``[start, start + length)`` into (offset, ring position) pieces of a ring of ``capacity``."""
    pos = start % capacity
    first = min(length, capacity - pos)
    pieces = [(slice(0, first), slice(pos, pos + first))]
    if first < length:
        pieces.append((slice(first, length), slice(0, length - first)))
    return pieces


def _as_plain_tensor(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


class SlabSlidingWindowInferer(Inferer):
    """Sliding-window inference whose stitch lives in one slab; returns labels, probabilities or logits.

    The windows, their blending weights and their average are those of MONAI's
    :class:`~monai.inferers.SlidingWindowInferer` with the same ``roi_size``, ``overlap``, ``mode`` and
    ``sigma_scale`` (which implements the patch-based inference of e.g. Oktay et al., "Attention U-Net: Learning
    Where to Look for the Pancreas", MIDL 2018, on CT volumes); only the memory differs: the float stitch holds
    ``roi_size[axis]`` planes instead of the whole volume, and the result is post-processed plane block by plane
    block into a preallocated output. With ``output="labels"`` there is no argmax left to do afterwards.

    The result is a :class:`~monai.data.MetaTensor` carrying the input's metadata and applied operations, so
    ``Invertd`` and ``SaveImaged`` work on it. Recommended post-processing for labels: ``Invertd`` with
    ``nearest_interp=True``, then ``SaveImaged(resample=False, output_dtype=uint8)``; do not argmax again.

    Args:
        roi_size: window size, an int or one value per spatial axis; ``None``/non-positive entries take the
            input's size along that axis (as in MONAI).
        sw_batch_size: windows per network call. Windows of one slab are batched together; a batch never spans
            two slabs, so the slab depth stays ``roi_size[axis]``.
        overlap: overlap of neighbouring windows along each axis, in ``[0, 1)``.
        mode: ``"constant"`` or ``"gaussian"`` blending of overlapping windows.
        axis: spatial axis (0-based; negative counts from the end) along which the slabs advance. ``None``
            picks the axis with the smallest slab, i.e. the smallest ``roi_size[a] / size[a]`` (ties: the later
            axis); for a 512x512x200 CT with a cubic window that is an in-plane axis, whose slab is 2.5 times
            smaller than one advancing along the 200 slices.
        output: ``"labels"``: ``(B, 1, *spatial)`` class indices, uint8 (int16 above 256 classes); a network with
            one output channel gives ``logit > 0``. ``"probabilities"``: ``(B, C, *spatial)`` float16 softmax
            (sigmoid for one channel). ``"logits"``: ``(B, C, *spatial)`` averaged network outputs in float32,
            numerically MONAI's stitch (full-volume memory; for checks and for callers that need the logits).
        sigma_scale: standard deviation of the gaussian importance map relative to ``roi_size``.
        padding_mode: how inputs smaller than ``roi_size`` are padded (``"constant"``, ``"reflect"``,
            ``"replicate"``, ``"circular"``); the padding is cropped from the result, as in MONAI.
        cval: padding value for ``padding_mode="constant"``.
        sw_device: device that runs the network and holds the slab (default: the input's device).
        device: device of the returned volume (default: the input's device).

    Raises:
        ValueError: for an invalid argument (the message says which values are valid), for inputs that are not
            ``(B, C, *spatial)`` tensors matching ``roi_size``, or when the network returns outputs whose batch
            or spatial size differs from its input window.

    Examples:
        3D CT, 14 classes, labels written straight into a uint8 volume::

            inferer = SlabSlidingWindowInferer(roi_size=(96, 96, 96), sw_batch_size=2, overlap=0.25, mode="gaussian")
            labels = inferer(ct, net)  # ct: (1, 1, 512, 512, 200) -> labels: (1, 1, 512, 512, 200) uint8

        2D whole-slide tile, probabilities in float16::

            inferer = SlabSlidingWindowInferer(roi_size=256, overlap=0.25, output="probabilities")
            probs = inferer(rgb, net)  # rgb: (1, 3, 1720, 1280) -> probs: (1, C, 1720, 1280) float16
    """

    #: whether one network batch may take windows from several slabs (cheap for 2D slices, see SliceWiseInferer)
    _batch_across_slabs: bool = False

    def __init__(
        self,
        roi_size: Sequence[int] | int | None,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.CONSTANT,
        *,
        axis: int | None = None,
        output: str = "labels",
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: PytorchPadMode | str = PytorchPadMode.CONSTANT,
        cval: float = 0.0,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self.roi_size = self._check_roi(roi_size, name)
        if isinstance(sw_batch_size, bool) or not isinstance(sw_batch_size, (int, np.integer)) or sw_batch_size < 1:
            raise ValueError(f"{name}: sw_batch_size must be an int >= 1, got {sw_batch_size!r}.")
        self.sw_batch_size = int(sw_batch_size)
        for o in overlap if isinstance(overlap, Sequence) else (overlap,):
            if not isinstance(o, (float, int, np.floating, np.integer)) or not 0 <= float(o) < 1:
                raise ValueError(f"{name}: overlap must be in [0, 1) (one value or one per axis), got {overlap!r}.")
        self.overlap = overlap
        try:
            self.mode = look_up_option(mode, BlendMode)
        except ValueError as e:
            raise ValueError(f"{name}: mode must be 'constant' or 'gaussian', got {mode!r}.") from e
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
            raise ValueError(f"{name}: axis must be None or an int spatial axis (negative counts from the end).")
        self.axis = None if axis is None else int(axis)
        if output not in OUTPUT_KINDS:
            raise ValueError(f"{name}: output must be one of {OUTPUT_KINDS}, got {output!r}.")
        self.output = output
        for s in sigma_scale if isinstance(sigma_scale, Sequence) else (sigma_scale,):
            if not isinstance(s, (float, int)) or s <= 0:
                raise ValueError(f"{name}: sigma_scale must be > 0, got {sigma_scale!r}.")
        self.sigma_scale = sigma_scale
        try:
            self.padding_mode = look_up_option(padding_mode, PytorchPadMode)
        except ValueError as e:
            valid = [m.value for m in PytorchPadMode]
            raise ValueError(f"{name}: padding_mode must be one of {valid}, got {padding_mode!r}.") from e
        self.cval = float(cval)
        self.sw_device = sw_device
        self.device = device

    # ----------------------------------------------------------------------------------------------------------
    # public API

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor | MetaTensor:
        """Run ``network`` over ``inputs`` window by window and return the stitched result.

        Args:
            inputs: ``(B, C_in, *spatial)`` tensor (a MetaTensor keeps its metadata on the result).
            network: callable mapping ``(n, C_in, *roi)`` windows to ``(n, C, *roi)`` outputs; a list/tuple
                output (deep supervision) contributes its first element.
            args: extra positional arguments for ``network``.
            kwargs: extra keyword arguments for ``network``.

        Raises:
            ValueError: see the class docstring.
        """
        self._check_inputs(inputs)
        plan = self._plan(inputs.shape[2:])
        predictor = self._predictor(network, args, kwargs)
        with torch.no_grad():
            result = self._stitch(inputs, predictor, plan)
        if isinstance(inputs, MetaTensor):
            result = MetaTensor(result).copy_meta_from(inputs)
        return result

    def _plan(self, spatial_size: Sequence[int]) -> _Plan:
        """Window grid, slab axis and slab depth for an input of ``spatial_size`` (no padding applied yet).

        Raises:
            ValueError: when ``roi_size`` does not fit the number of spatial axes.
        """
        spatial = tuple(int(s) for s in spatial_size)
        roi = self._roi_for(spatial)
        nd = len(spatial)
        diffs = [max(r - n, 0) for r, n in zip(roi, spatial)]
        pads = tuple((d // 2, d - d // 2) for d in diffs)
        image_size = tuple(n + d for n, d in zip(spatial, diffs))
        axis = self._resolve_axis(roi, image_size)
        overlap = ensure_tuple_rep(self.overlap, nd)
        interval = tuple(
            r if r == n else max(int(r * (1 - float(o))), 1) for r, n, o in zip(roi, image_size, overlap)
        )  # MONAI's scan interval rule
        grid = dense_patch_slices(image_size, roi, interval)
        order = sorted(range(len(grid)), key=lambda i: grid[i][axis].start)  # stable: MONAI's order within a slab
        slices = tuple(grid[i] for i in order)
        chunks: list[tuple[int, ...]] = []
        current: list[int] = []
        for i, sl in enumerate(slices):
            new_slab = bool(current) and sl[axis].start != slices[current[-1]][axis].start
            if current and (len(current) == self.sw_batch_size or (new_slab and not self._batch_across_slabs)):
                chunks.append(tuple(current))
                current = []
            current.append(i)
        chunks.append(tuple(current))
        capacity = max(slices[c[-1]][axis].start + roi[axis] - slices[c[0]][axis].start for c in chunks)
        return _Plan(spatial, roi, pads, image_size, axis, slices, tuple(chunks), capacity)

    def estimate_memory(
        self, spatial_size: Sequence[int], num_classes: int, in_channels: int = 1, itemsize: int = 4
    ) -> dict[str, int]:
        """Bytes held by the stitch for one volume: slab buffer, one network batch (inputs and outputs) and output.

        Args:
            spatial_size: the input's spatial size.
            num_classes: the network's output channels.
            in_channels: the network's input channels.
            itemsize: bytes per element of the float stitch (4 for float32).

        Returns:
            ``{"axis", "slab_planes", "slab_bytes", "batch_bytes", "output_bytes"}``; the network's own
            activations and the input volume are not included.

        Raises:
            ValueError: for a non-positive ``num_classes`` or a ``spatial_size`` that does not fit ``roi_size``.
        """
        plan = self._plan(spatial_size)
        num_classes = int(num_classes)
        label_bytes = torch.empty((), dtype=label_dtype(num_classes)).element_size()
        cross = int(np.prod([s for a, s in enumerate(plan.image_size) if a != plan.axis]))
        voxels = int(np.prod(plan.spatial))
        per_voxel = {"labels": label_bytes, "probabilities": 2 * num_classes, "logits": itemsize * num_classes}
        return {
            "axis": plan.axis,
            "slab_planes": plan.capacity,
            "slab_bytes": (num_classes + 1) * plan.capacity * cross * itemsize,
            "batch_bytes": max(len(c) for c in plan.chunks)
            * (in_channels + num_classes)
            * int(np.prod(plan.roi))
            * itemsize,
            "output_bytes": per_voxel[self.output] * voxels,
        }

    # ----------------------------------------------------------------------------------------------------------
    # hooks for SliceWiseInferer

    @staticmethod
    def _check_roi(roi_size: Sequence[int] | int | None, name: str) -> Sequence[int] | int | None:
        values = roi_size if isinstance(roi_size, Sequence) else (roi_size,)
        for r in values:
            if r is not None and (isinstance(r, bool) or not isinstance(r, (int, np.integer))):
                raise ValueError(f"{name}: roi_size must be an int or a sequence of ints (None = whole axis).")
        return roi_size

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if not isinstance(inputs, torch.Tensor) or inputs.ndim < 3:
            shape = getattr(inputs, "shape", None)
            raise ValueError(
                f"{type(self).__name__} expects a (B, C, *spatial) torch.Tensor, got {type(inputs).__name__} {shape}."
            )

    def _roi_for(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(self.roi_size, Sequence) and len(self.roi_size) != len(spatial):
            raise ValueError(
                f"{type(self).__name__}: roi_size {tuple(self.roi_size)} has {len(self.roi_size)} values but the "
                f"input has {len(spatial)} spatial axes {spatial}; give one value per spatial axis (B, C, *spatial)."
            )
        roi = self.roi_size if isinstance(self.roi_size, Sequence) else ensure_tuple_rep(self.roi_size, len(spatial))
        roi = tuple(-1 if r is None else int(r) for r in roi)
        return tuple(int(r) for r in fall_back_tuple(roi, spatial))

    def _resolve_axis(self, roi: tuple[int, ...], image_size: tuple[int, ...]) -> int:
        nd = len(image_size)
        if self.axis is None:
            ratios = [r / n for r, n in zip(roi, image_size)]
            best = min(ratios)
            return max(a for a in range(nd) if ratios[a] == best)
        if not -nd <= self.axis < nd:
            raise ValueError(f"{type(self).__name__}: axis must be in [{-nd}, {nd - 1}] for {nd}D inputs.")
        return self.axis % nd

    def _predictor(self, network: Callable[..., Any], args: tuple, kwargs: dict) -> Callable[[torch.Tensor], Any]:
        return lambda x: network(x, *args, **kwargs)

    # ----------------------------------------------------------------------------------------------------------
    # the stitch

    def _stitch(self, inputs: torch.Tensor, predictor: Callable[[torch.Tensor], Any], plan: _Plan) -> torch.Tensor:
        x = _as_plain_tensor(inputs)
        if any(sum(p) for p in plan.pads):
            flat = [v for pair in reversed(plan.pads) for v in pair]
            if self.padding_mode == PytorchPadMode.CONSTANT:
                x = F.pad(x, flat, mode="constant", value=self.cval)
            else:
                x = F.pad(x, flat, mode=self.padding_mode.value)
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else x.device
        out_device = torch.device(self.device) if self.device is not None else inputs.device
        acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        weight = compute_importance_map(
            plan.roi, mode=self.mode, sigma_scale=self.sigma_scale, device=sw_device, dtype=acc_dtype
        )[None]  # (1, *roi)
        axis, cap = plan.axis, plan.capacity
        ring_shape = list(plan.image_size)
        ring_shape[axis] = cap
        output: torch.Tensor | None = None
        for b in range(x.shape[0]):
            acc: torch.Tensor | None = None
            count = torch.zeros((1, *ring_shape), dtype=acc_dtype, device=sw_device)
            done = 0  # planes [0, done) of the padded volume are final
            for c, chunk in enumerate(plan.chunks):
                windows = [x[(slice(b, b + 1), slice(None), *plan.slices[i])] for i in chunk]
                pred = self._run_network(predictor, torch.cat(windows).to(sw_device), plan.roi)
                pred = pred.to(acc_dtype)
                pred *= weight
                if acc is None:
                    acc = torch.zeros((pred.shape[1], *ring_shape), dtype=acc_dtype, device=sw_device)
                if output is None:
                    output = self._allocate_output(x.shape[0], pred.shape[1], plan.spatial, acc_dtype, out_device)
                for k, i in enumerate(chunk):
                    window = plan.slices[i]
                    for src, dst in _ring(window[axis].start, plan.roi[axis], cap):
                        target = list(window)
                        target[axis] = dst
                        source = [slice(None)] * len(window)
                        source[axis] = src
                        acc[(slice(None), *target)] += pred[(k, slice(None), *source)]
                        count[(slice(None), *target)] += weight[(slice(None), *source)]
                nxt = plan.slices[plan.chunks[c + 1][0]][axis].start if c + 1 < len(plan.chunks) else None
                final = plan.image_size[axis] if nxt is None else nxt
                self._finalize(acc, count, plan, done, final, output, b)
                done = final
        if output is None:  # pragma: no cover - a grid always has at least one window
            raise RuntimeError("no window was evaluated.")
        return output

    def _run_network(self, predictor: Callable[[torch.Tensor], Any], windows: torch.Tensor, roi: tuple) -> torch.Tensor:
        pred = predictor(windows)
        if isinstance(pred, (list, tuple)) and pred:
            pred = pred[0]
        if not isinstance(pred, torch.Tensor):
            raise ValueError(
                f"{type(self).__name__}: the network must return a Tensor (or a list/tuple whose first item is the "
                f"final Tensor), got {type(pred).__name__}."
            )
        pred = _as_plain_tensor(pred)
        if pred.ndim != windows.ndim or pred.shape[0] != windows.shape[0] or tuple(pred.shape[2:]) != tuple(roi):
            raise ValueError(
                f"{type(self).__name__}: the network returned {tuple(pred.shape)} for windows "
                f"{tuple(windows.shape)}; it must keep the batch and spatial size (B, C_out, *roi)."
            )
        return pred

    def _allocate_output(
        self, batch: int, channels: int, spatial: tuple[int, ...], acc_dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        if self.output == "labels":
            return torch.empty((batch, 1, *spatial), dtype=label_dtype(channels), device=device)
        dtype = torch.float16 if self.output == "probabilities" else acc_dtype
        return torch.empty((batch, channels, *spatial), dtype=dtype, device=device)

    def _finalize(
        self,
        acc: torch.Tensor,
        count: torch.Tensor,
        plan: _Plan,
        start: int,
        stop: int,
        output: torch.Tensor,
        b: int,
    ) -> None:
        """Normalise planes ``[start, stop)`` of the padded volume, write them to ``output[b]``, clear them."""
        axis = plan.axis
        n_axis = plan.spatial[axis]
        before = plan.pads[axis][0]
        crop = [slice(p[0], p[0] + n) for p, n in zip(plan.pads, plan.spatial)]
        for p0 in range(start, stop, _FINALIZE_PLANES):
            p1 = min(stop, p0 + _FINALIZE_PLANES)
            for src, dst in _ring(p0, p1 - p0, plan.capacity):
                ring_index = [slice(None)] * (len(plan.spatial) + 1)
                ring_index[axis + 1] = dst
                block, weights = acc[tuple(ring_index)], count[tuple(ring_index)]
                block /= weights
                a0 = p0 + src.start - before  # first plane of this piece in unpadded coordinates
                a1 = a0 + (src.stop - src.start)
                lo, hi = max(a0, 0), min(a1, n_axis)
                if hi > lo:
                    piece_crop = list(crop)
                    piece_crop[axis] = slice(lo - a0, hi - a0)
                    out_index = [slice(None)] * len(plan.spatial)
                    out_index[axis] = slice(lo, hi)
                    piece = block[(slice(None), *piece_crop)]
                    output[(b, slice(None), *out_index)] = self._post(piece).to(output.device)
                block.zero_()
                weights.zero_()

    def _post(self, logits: torch.Tensor) -> torch.Tensor:
        """Channel-first averaged logits of a block of planes -> the requested output kind."""
        if self.output == "labels":
            return class_labels(logits, dim=0)
        if self.output == "probabilities":
            return class_probabilities(logits, dim=0).to(torch.float16)
        return logits


class SliceWiseInferer(SlabSlidingWindowInferer):
    """Apply a 2D network slice by slice to a 3D volume, stacking the results into a 3D labels volume.

    The 2D/3D evaluation of DANIE (seed 003) and TransUNet-style Synapse pipelines: a network trained on axial
    slices is evaluated per volume. Slices along ``axis`` (default the last spatial axis, axial for RAS volumes)
    are cut into 2D windows of ``roi_size`` (``None``: the whole slice), ``sw_batch_size`` windows are run per
    network call (they may come from several slices), and each finished slice is blended, argmaxed (or
    softmaxed) and written into the preallocated output. The float stitch holds only the slices of one network
    batch, never the volume. Window grid and blending equal MONAI's :class:`~monai.inferers.SliceInferer` with
    the same 2D ``roi_size``, ``overlap`` and ``mode``, so the labels equal its output + argmax.

    Args:
        roi_size: 2D window within a slice (an int or two values; ``None``/non-positive: the slice's size).
        sw_batch_size: 2D windows per network call.
        overlap: overlap of neighbouring 2D windows within a slice, in ``[0, 1)``.
        mode: ``"constant"`` or ``"gaussian"`` blending within a slice.
        axis: spatial axis the slices are taken along (0-based; negative counts from the end).
        output: ``"labels"``, ``"probabilities"`` or ``"logits"`` as for :class:`SlabSlidingWindowInferer`.
        kwargs: ``sigma_scale``, ``padding_mode``, ``cval``, ``sw_device``, ``device`` as for
            :class:`SlabSlidingWindowInferer`.

    Raises:
        ValueError: for invalid arguments, inputs that are not ``(B, C, H, W, D)`` volumes, or a network that
            changes the batch or spatial size.

    Examples:
        3D CT evaluated with a 2D network, whole axial slices, 9 classes::

            inferer = SliceWiseInferer(roi_size=None, sw_batch_size=8)
            labels = inferer(ct, net2d)  # ct: (1, 1, 512, 512, 200) -> labels: (1, 1, 512, 512, 200) uint8

        2D windows of 224x224 inside each slice, probabilities::

            inferer = SliceWiseInferer(roi_size=(224, 224), overlap=0.5, mode="gaussian", output="probabilities")
            probs = inferer(ct, net2d)  # (1, 9, 512, 512, 200) float16
    """

    _batch_across_slabs = True

    def __init__(
        self,
        roi_size: Sequence[int] | int | None = None,
        sw_batch_size: int = 8,
        overlap: Sequence[float] | float = 0.25,
        mode: BlendMode | str = BlendMode.CONSTANT,
        *,
        axis: int = -1,
        output: str = "labels",
        **kwargs: Any,
    ) -> None:
        if isinstance(roi_size, Sequence) and len(roi_size) != 2:
            raise ValueError(f"SliceWiseInferer: roi_size is a 2D window (two values), got {tuple(roi_size)}.")
        if isinstance(overlap, Sequence) and len(overlap) != 2:
            raise ValueError(f"SliceWiseInferer: overlap is one value or two (one per in-slice axis), got {overlap}.")
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis <= 2:
            raise ValueError(f"SliceWiseInferer: axis must be an int in [-3, 2], got {axis!r}.")
        super().__init__(roi_size, sw_batch_size, overlap, mode, axis=int(axis) % 3, output=output, **kwargs)
        self.roi_size_2d = ensure_tuple_rep(roi_size, 2)
        self.overlap_2d = ensure_tuple_rep(overlap, 2)
        self.roi_size = self._insert(self.roi_size_2d, 1)
        self.overlap = self._insert(self.overlap_2d, 0.0)

    def _insert(self, values: tuple, along_axis: Any) -> tuple:
        out = list(values)
        out.insert(self.axis, along_axis)
        return tuple(out)

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 5:
            shape = getattr(inputs, "shape", None)
            raise ValueError(
                f"SliceWiseInferer expects a 3D volume (B, C, H, W, D), got {type(inputs).__name__} {shape}; "
                "for 2D images use SlabSlidingWindowInferer or MONAI's SlidingWindowInferer."
            )

    def _predictor(self, network: Callable[..., Any], args: tuple, kwargs: dict) -> Callable[[torch.Tensor], Any]:
        dim = self.axis + 2

        def predict(x: torch.Tensor) -> Any:
            out = network(x.squeeze(dim), *args, **kwargs)
            if isinstance(out, (list, tuple)):
                return [o.unsqueeze(dim) for o in out]
            if isinstance(out, torch.Tensor):
                return out.unsqueeze(dim)
            return out

        return predict
