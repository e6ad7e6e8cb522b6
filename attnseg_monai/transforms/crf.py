"""Dense-CRF refinement of segmentation probabilities, guided by the image (seed 002, "resolution enhancement").

The focal/attention U-Net seed lists a conditional random field (CRF) among the "resolution enhancement" steps: a
post-processing that pulls the network's class probabilities towards the image's edges. MONAI ships that CRF as
:class:`monai.networks.blocks.CRF` (mean-field inference of a fully connected CRF with a bilateral and a Gaussian
kernel, Krähenbühl & Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian Edge Potentials", NeurIPS
2011, as formulated by Zheng et al., "Conditional Random Fields as Recurrent Neural Networks", ICCV 2015). Its
message passing needs MONAI's compiled extension ``monai._C`` (the permutohedral lattice), which the MONAI wheels on
PyPI do not contain. This module therefore runs MONAI's CRF when the extension is there and otherwise the same
mean-field iteration in plain PyTorch (:func:`mean_field_crf`), with the message passing computed directly:

- Gaussian term: a normalised, separable Gaussian blur of the class probabilities (exact up to truncation);
- bilateral term: ``m_i = Σ_j w_ij q_j / Σ_j w_ij`` with
  ``w_ij = exp(-|x_i - x_j|² / (2 σ_s²) - |I_i - I_j|² / (2 σ_c²))`` over the offsets ``x_j - x_i`` of a ball of
  radius ``truncate · σ_s`` (optionally sampled every ``bilateral_step`` pixels); ``I`` is the reference image, all
  its channels.

Both backends then update ``Q = softmax(U + update_factor · (w_b · bilateral(Q) + w_g · gaussian(Q)) · M)`` for
``iterations`` steps, where ``U`` are the unary logits (the log of the network's probabilities) and ``M`` the
optional class compatibility matrix (identity when ``None``): the lattice filter of MONAI is a normalised Gaussian
filter in the scaled feature space ``(x / σ_s, I / σ_c)``, which is the kernel above. Everything works for 1D, 2D
and 3D inputs, as MONAI's CRF does.

:class:`CRFRefine` is the array transform (probabilities and reference image, channel first, no batch) and
:class:`CRFd` the dictionary transform used by the ``focal_attn_unet`` bundle (``configs/crf.json``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.networks.layers import separable_filtering
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, optional_import

__all__ = ["CRFRefine", "CRFd", "mean_field_crf", "monai_crf_available"]

_BACKENDS = ("auto", "monai", "torch")
# cache the bilateral weights of all offsets when they take at most this many float32 values (128 MiB)
_WEIGHT_CACHE_LIMIT = 1 << 25


def monai_crf_available() -> bool:
    """Whether MONAI's compiled extension (the permutohedral filter ``monai.networks.blocks.CRF`` needs) loads."""
    ext, ok = optional_import("monai._C")
    return bool(ok) and hasattr(ext, "phl_filter")


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
    return float(value)


def _compatibility(matrix: Any) -> torch.Tensor | None:
    if matrix is None:
        return None
    try:
        out = torch.as_tensor(matrix, dtype=torch.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"compatibility_matrix must be None or a square C x C matrix of numbers: {err}") from err
    if out.ndim != 2 or out.shape[0] != out.shape[1] or out.shape[0] < 2:
        raise ValueError(
            f"compatibility_matrix must be None or a square C x C matrix (C = number of classes >= 2), "
            f"got shape {tuple(out.shape)}."
        )
    if not torch.isfinite(out).all():
        raise ValueError("compatibility_matrix must hold finite numbers.")
    return out


def _ball_offsets(radius: int, step: int, dims: int) -> list[tuple[int, ...]]:
    """Integer offsets on a grid of pitch ``step`` inside the ball of ``radius`` (the centre always included)."""
    axis = range(-(radius // step) * step, radius + 1, step)
    return [o for o in itertools.product(axis, repeat=dims) if sum(v * v for v in o) <= radius * radius]


def _shifted(x: torch.Tensor, offset: Sequence[int], pad: int, size: Sequence[int]) -> torch.Tensor:
    """The view of a tensor padded by ``pad`` on every spatial side that is shifted by ``offset``."""
    for axis, (o, n) in enumerate(zip(offset, size)):
        x = x.narrow(2 + axis, pad + o, n)
    return x


def _gaussian_message(q: torch.Tensor, sigma: float, truncate: float) -> torch.Tensor:
    """Normalised separable Gaussian blur (zero outside the image, divided by the blurred ones)."""
    radius = max(1, math.ceil(truncate * sigma))
    t = torch.arange(-radius, radius + 1, dtype=q.dtype, device=q.device)
    kernel = torch.exp(-(t**2) / (2.0 * sigma * sigma))
    kernels = [kernel] * (q.ndim - 2)
    ones = torch.ones((1, 1, *q.shape[2:]), dtype=q.dtype, device=q.device)
    return separable_filtering(q, kernels) / separable_filtering(ones, kernels)


class _BilateralMessage:
    """Normalised bilateral filter of the class probabilities against a fixed reference (weights built once)."""

    def __init__(
        self, reference: torch.Tensor, spatial_sigma: float, color_sigma: float, truncate: float, step: int
    ) -> None:
        self.size = reference.shape[2:]
        self.radius = max(1, math.ceil(truncate * spatial_sigma))
        self.offsets = _ball_offsets(self.radius, step, reference.ndim - 2)
        self.spatial = [math.exp(-sum(v * v for v in o) / (2.0 * spatial_sigma**2)) for o in self.offsets]
        self.inv_two_color_var = 1.0 / (2.0 * color_sigma**2)
        pad = [self.radius] * (2 * (reference.ndim - 2))
        self.reference = reference
        self.reference_padded = F.pad(reference, pad)
        ones = torch.ones((reference.shape[0], 1, *self.size), dtype=reference.dtype, device=reference.device)
        self.valid_padded = F.pad(ones, pad)
        self.pad = pad
        count = len(self.offsets) * reference.shape[0] * math.prod(self.size)
        self.cache = [self._weight(k) for k in range(len(self.offsets))] if count <= _WEIGHT_CACHE_LIMIT else None

    def _weight(self, k: int) -> torch.Tensor:
        offset = self.offsets[k]
        neighbour = _shifted(self.reference_padded, offset, self.radius, self.size)
        dist2 = (self.reference - neighbour).square().sum(dim=1, keepdim=True)
        valid = _shifted(self.valid_padded, offset, self.radius, self.size)
        return torch.exp(-dist2 * self.inv_two_color_var) * (self.spatial[k] * valid)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        q_padded = F.pad(q, self.pad)
        num = torch.zeros_like(q)
        den = torch.zeros((q.shape[0], 1, *self.size), dtype=q.dtype, device=q.device)
        for k, offset in enumerate(self.offsets):
            w = self.cache[k] if self.cache is not None else self._weight(k)
            num += w * _shifted(q_padded, offset, self.radius, self.size)
            den += w
        return num / den  # the centre offset has weight 1, so den >= 1


def mean_field_crf(
    logits: torch.Tensor,
    reference: torch.Tensor,
    *,
    iterations: int = 5,
    bilateral_weight: float = 1.0,
    gaussian_weight: float = 1.0,
    bilateral_spatial_sigma: float = 5.0,
    bilateral_color_sigma: float = 0.5,
    gaussian_spatial_sigma: float = 5.0,
    update_factor: float = 3.0,
    compatibility_matrix: torch.Tensor | Sequence[Sequence[float]] | None = None,
    truncate: float = 2.0,
    bilateral_step: int | None = None,
) -> torch.Tensor:
    """Mean-field inference of MONAI's CRF in plain PyTorch; returns the refined class probabilities.

    Same update as :class:`monai.networks.blocks.CRF` (see the module docstring), with the permutohedral-lattice
    filtering replaced by direct normalised Gaussian and bilateral filters. Spatial sigmas are in pixels (voxels), the
    colour sigma in the units of ``reference``.

    Args:
        logits: unary class scores ``(B, C, *spatial)`` with 1 to 3 spatial dimensions; ``softmax(logits)`` is the
            starting point (pass ``log(p)`` to start from probabilities ``p``).
        reference: the image guiding the bilateral term, ``(B, R, *spatial)``, same batch and spatial size.
        iterations: mean-field steps (0 returns ``softmax(logits)``).
        bilateral_weight: weight of the bilateral (edge-aware) message.
        gaussian_weight: weight of the Gaussian (smoothness) message.
        bilateral_spatial_sigma: spatial standard deviation of the bilateral kernel, pixels.
        bilateral_color_sigma: intensity standard deviation of the bilateral kernel, reference units.
        gaussian_spatial_sigma: standard deviation of the Gaussian kernel, pixels.
        update_factor: scale of the messages added to the unary logits.
        compatibility_matrix: optional ``C x C`` matrix applied to the combined message (MONAI's convention:
            ``message @ matrix`` over the class axis); ``None`` keeps the message as it is.
        truncate: kernels are cut at ``truncate`` standard deviations (the bilateral window is a ball of radius
            ``ceil(truncate * bilateral_spatial_sigma)``).
        bilateral_step: pitch of the sampled bilateral offsets; ``None`` gives ``max(1, floor(sigma / 2))``
            (2 for the default sigma of 5: 81 offsets in 2D, 515 in 3D instead of 317 and 4,169).

    Raises:
        ValueError: on inputs of the wrong rank, batch or spatial size, fewer than 2 classes, or a bad option.

    Examples::

        # 2D: (B, C, H, W) logits and a grey image
        probs = mean_field_crf(torch.randn(1, 2, 64, 64), torch.rand(1, 1, 64, 64), bilateral_color_sigma=0.1)
        # 3D: (B, C, H, W, D)
        probs = mean_field_crf(torch.randn(1, 3, 24, 24, 16), torch.rand(1, 1, 24, 24, 16), iterations=3)
    """
    opts = _check_options(
        iterations=iterations,
        bilateral_weight=bilateral_weight,
        gaussian_weight=gaussian_weight,
        bilateral_spatial_sigma=bilateral_spatial_sigma,
        bilateral_color_sigma=bilateral_color_sigma,
        gaussian_spatial_sigma=gaussian_spatial_sigma,
        update_factor=update_factor,
        compatibility_matrix=compatibility_matrix,
        truncate=truncate,
        bilateral_step=bilateral_step,
    )
    _check_pair(logits, reference, batched=True)
    unary = logits.float()
    ref = reference.to(device=unary.device, dtype=unary.dtype)
    q = torch.softmax(unary, dim=1)
    if opts["iterations"] == 0:
        return q
    compat = opts["compatibility_matrix"]
    if compat is not None:
        if compat.shape[0] != unary.shape[1]:
            raise ValueError(
                f"compatibility_matrix is {compat.shape[0]}x{compat.shape[0]} "
                f"but the input has {unary.shape[1]} classes."
            )
        compat = compat.to(device=unary.device, dtype=unary.dtype)
    bilateral = None
    if opts["bilateral_weight"] > 0:
        bilateral = _BilateralMessage(
            ref,
            opts["bilateral_spatial_sigma"],
            opts["bilateral_color_sigma"],
            opts["truncate"],
            opts["bilateral_step"],
        )
    for _ in range(opts["iterations"]):
        message = torch.zeros_like(q)
        if bilateral is not None:
            message = message + opts["bilateral_weight"] * bilateral(q)
        if opts["gaussian_weight"] > 0:
            message = message + opts["gaussian_weight"] * _gaussian_message(
                q, opts["gaussian_spatial_sigma"], opts["truncate"]
            )
        if compat is not None:
            message = torch.einsum("bc...,cd->bd...", message, compat)
        q = torch.softmax(unary + opts["update_factor"] * message, dim=1)
    return q


def _check_options(**opts: Any) -> dict[str, Any]:
    iterations = opts["iterations"]
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}.")
    out: dict[str, Any] = {"iterations": iterations}
    for name in ("bilateral_weight", "gaussian_weight"):
        out[name] = _non_negative(name, opts[name])
    for name in ("bilateral_spatial_sigma", "bilateral_color_sigma", "gaussian_spatial_sigma", "truncate"):
        out[name] = _positive(name, opts[name])
    factor = opts["update_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
        raise ValueError(f"update_factor must be a finite number, got {factor!r}.")
    out["update_factor"] = float(factor)
    out["compatibility_matrix"] = _compatibility(opts["compatibility_matrix"])
    step = opts["bilateral_step"]
    if step is None:
        step = max(1, int(out["bilateral_spatial_sigma"] // 2))
    elif isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"bilateral_step must be None or a positive integer, got {step!r}.")
    out["bilateral_step"] = step
    return out


def _check_pair(probs: torch.Tensor, reference: torch.Tensor, batched: bool) -> None:
    lead = 2 if batched else 1
    shape_text = "(B, C, *spatial)" if batched else "(C, *spatial)"
    if probs.ndim not in (lead + 1, lead + 2, lead + 3):
        raise ValueError(
            f"expected class scores {shape_text} with 1 to 3 spatial dimensions, got {tuple(probs.shape)}."
        )
    if probs.shape[lead - 1] < 2:
        raise ValueError(f"the CRF needs at least 2 class channels, got shape {tuple(probs.shape)}.")
    if (
        reference.ndim != probs.ndim
        or reference.shape[lead:] != probs.shape[lead:]
        or (batched and reference.shape[0] != probs.shape[0])
    ):
        raise ValueError(
            f"the reference image {tuple(reference.shape)} must have the batch and spatial size of the class scores "
            f"{tuple(probs.shape)} (channel first{', batch first' if batched else ''}); apply the CRF at the "
            "network's resolution, before inverting any resize."
        )


class CRFRefine(Transform):
    """Refine class probabilities with MONAI's CRF, using an image as the feature map (seed 002 post-processing).

    The probabilities ``p`` (e.g. after ``Activations(softmax=True)``) become the unary logits ``log(max(p, eps))``
    (``softmax`` of them gives ``p`` back), then ``iterations`` mean-field steps of a fully connected CRF whose
    pairwise term is a bilateral kernel on position and image intensity plus a Gaussian kernel on position. The
    output is again probabilities (they sum to 1 over the classes), same shape and type as the input. Use it at the
    network's working resolution; sigmas are in pixels (voxels) there, the colour sigma in the image's units (the
    bundle scales images to [0, 1]).

    Args:
        iterations: mean-field steps (MONAI default 5).
        bilateral_weight: weight of the edge-aware bilateral message.
        gaussian_weight: weight of the Gaussian smoothness message.
        bilateral_spatial_sigma: spatial reach of the bilateral kernel, pixels.
        bilateral_color_sigma: intensity difference at which the bilateral kernel falls to ``exp(-1/2)``, image units;
            small values stop the smoothing at weaker edges.
        gaussian_spatial_sigma: spatial reach of the Gaussian kernel, pixels.
        update_factor: how strongly the messages move the unary logits.
        compatibility_matrix: optional ``C x C`` class compatibility (nested lists allowed), see
            :func:`mean_field_crf`.
        truncate: kernel cut-off in standard deviations (``"torch"`` backend).
        bilateral_step: pitch of the sampled bilateral offsets (``"torch"`` backend), ``None`` for the default.
        backend: ``"auto"`` (MONAI's ``CRF`` when ``monai._C`` is compiled, else ``"torch"``), ``"monai"`` (require it)
            or ``"torch"`` (:func:`mean_field_crf`).
        from_logits: the input holds logits, not probabilities (no log taken).
        eps: floor of the probabilities before the log.

    Raises:
        ValueError: on a bad option, or (when called) on inputs of the wrong shape.
        RuntimeError: when called with ``backend="monai"`` and MONAI's extension is missing.

    Examples::

        refine = CRFRefine(bilateral_color_sigma=0.1)
        # 2D: probabilities (2, H, W) and a grey image (1, H, W)
        p = refine(torch.softmax(torch.randn(2, 64, 64), 0), torch.rand(1, 64, 64))
        # 3D: (3, H, W, D) and (1, H, W, D)
        p = refine(torch.softmax(torch.randn(3, 24, 24, 16), 0), torch.rand(1, 24, 24, 16))
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        iterations: int = 5,
        bilateral_weight: float = 1.0,
        gaussian_weight: float = 1.0,
        bilateral_spatial_sigma: float = 5.0,
        bilateral_color_sigma: float = 0.5,
        gaussian_spatial_sigma: float = 5.0,
        update_factor: float = 3.0,
        compatibility_matrix: Sequence[Sequence[float]] | torch.Tensor | None = None,
        truncate: float = 2.0,
        bilateral_step: int | None = None,
        backend: str = "auto",
        from_logits: bool = False,
        eps: float = 1e-6,
    ) -> None:
        self.options = _check_options(
            iterations=iterations,
            bilateral_weight=bilateral_weight,
            gaussian_weight=gaussian_weight,
            bilateral_spatial_sigma=bilateral_spatial_sigma,
            bilateral_color_sigma=bilateral_color_sigma,
            gaussian_spatial_sigma=gaussian_spatial_sigma,
            update_factor=update_factor,
            compatibility_matrix=compatibility_matrix,
            truncate=truncate,
            bilateral_step=bilateral_step,
        )
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}.")
        self.crf_backend = backend
        self.from_logits = bool(from_logits)
        self.eps = _positive("eps", eps)

    def resolved_backend(self) -> str:
        """The backend a call uses now: ``"monai"`` or ``"torch"``.

        Raises:
            RuntimeError: for ``backend="monai"`` without MONAI's compiled extension.
        """
        if self.crf_backend == "torch":
            return "torch"
        if monai_crf_available():
            return "monai"
        if self.crf_backend == "monai":
            raise RuntimeError(
                "backend='monai' needs MONAI's compiled extension monai._C (install MONAI built with BUILD_MONAI=1); "
                "use backend='auto' or 'torch' for the PyTorch implementation of the same CRF."
            )
        return "torch"

    def __call__(self, img: NdarrayOrTensor, reference: NdarrayOrTensor) -> NdarrayOrTensor:  # type: ignore[override]
        """Refine ``img`` (``(C, *spatial)`` probabilities, or logits with ``from_logits``) using ``reference``."""
        scores = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        ref = convert_to_tensor(reference, track_meta=False, dtype=torch.float32).to(scores.device)
        _check_pair(scores, ref, batched=False)
        logits = scores if self.from_logits else torch.log(scores.clamp_min(self.eps))
        opts = self.options
        if self.resolved_backend() == "monai":
            from monai.networks.blocks import CRF

            crf = CRF(
                iterations=opts["iterations"],
                bilateral_weight=opts["bilateral_weight"],
                gaussian_weight=opts["gaussian_weight"],
                bilateral_spatial_sigma=opts["bilateral_spatial_sigma"],
                bilateral_color_sigma=opts["bilateral_color_sigma"],
                gaussian_spatial_sigma=opts["gaussian_spatial_sigma"],
                update_factor=opts["update_factor"],
                compatibility_matrix=opts["compatibility_matrix"],
            )
            with torch.no_grad():
                out = crf(logits[None], ref[None])[0]
        else:
            with torch.no_grad():
                out = mean_field_crf(logits[None], ref[None], **opts)[0]
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]


class CRFd(MapTransform):
    """Dictionary version of :class:`CRFRefine`: refine each key's class probabilities with the image as reference.

    Put it in the post-processing after the softmax and before any step that changes the geometry (e.g. ``Invertd``
    of a resize): the reference ``data[image_key]`` must have the probabilities' spatial size. The
    ``focal_attn_unet`` bundle enables it with ``configs/crf.json``.

    Args:
        keys: keys of the ``(C, *spatial)`` probabilities to refine (replaced in place).
        image_key: key of the ``(R, *spatial)`` reference image (the network input, intensities in [0, 1]).
        iterations: see :class:`CRFRefine`.
        bilateral_weight: see :class:`CRFRefine`.
        gaussian_weight: see :class:`CRFRefine`.
        bilateral_spatial_sigma: see :class:`CRFRefine`.
        bilateral_color_sigma: see :class:`CRFRefine`.
        gaussian_spatial_sigma: see :class:`CRFRefine`.
        update_factor: see :class:`CRFRefine`.
        compatibility_matrix: see :class:`CRFRefine`.
        truncate: see :class:`CRFRefine`.
        bilateral_step: see :class:`CRFRefine`.
        backend: see :class:`CRFRefine`.
        from_logits: see :class:`CRFRefine`.
        eps: see :class:`CRFRefine`.
        allow_missing_keys: do not raise for a missing key.

    Raises:
        ValueError: on a bad option; when called, if ``image_key`` is missing or the shapes do not match.

    Examples::

        crf = CRFd("pred", image_key="image", bilateral_color_sigma=0.1)
        # 2D: {"pred": (2, H, W) probabilities, "image": (1, H, W)}
        out = crf({"pred": torch.softmax(torch.randn(2, 64, 64), 0), "image": torch.rand(1, 64, 64)})
        # 3D: {"pred": (3, H, W, D), "image": (1, H, W, D)}
        out = crf({"pred": torch.softmax(torch.randn(3, 24, 24, 16), 0), "image": torch.rand(1, 24, 24, 16)})
    """

    backend = CRFRefine.backend

    def __init__(
        self,
        keys: KeysCollection = "pred",
        image_key: str = "image",
        iterations: int = 5,
        bilateral_weight: float = 1.0,
        gaussian_weight: float = 1.0,
        bilateral_spatial_sigma: float = 5.0,
        bilateral_color_sigma: float = 0.5,
        gaussian_spatial_sigma: float = 5.0,
        update_factor: float = 3.0,
        compatibility_matrix: Sequence[Sequence[float]] | torch.Tensor | None = None,
        truncate: float = 2.0,
        bilateral_step: int | None = None,
        backend: str = "auto",
        from_logits: bool = False,
        eps: float = 1e-6,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.refiner = CRFRefine(
            iterations=iterations,
            bilateral_weight=bilateral_weight,
            gaussian_weight=gaussian_weight,
            bilateral_spatial_sigma=bilateral_spatial_sigma,
            bilateral_color_sigma=bilateral_color_sigma,
            gaussian_spatial_sigma=gaussian_spatial_sigma,
            update_factor=update_factor,
            compatibility_matrix=compatibility_matrix,
            truncate=truncate,
            bilateral_step=bilateral_step,
            backend=backend,
            from_logits=from_logits,
            eps=eps,
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.image_key not in d:
            raise ValueError(f"CRFd needs the reference image under {self.image_key!r}; keys present: {list(d)}.")
        for key in self.key_iterator(d):
            d[key] = self.refiner(d[key], d[self.image_key])
        return d
