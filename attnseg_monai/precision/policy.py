"""The precision policy: in which dtype and memory layout a network runs for inference, chosen per device.

``"auto"`` picks, from :class:`~.capability.DeviceCapabilities`:

- CPU with AMX-BF16 or AVX-512-BF16: convolutions and matmuls in bfloat16 under :func:`torch.autocast` (float32
  weights, cast per call; the ops after a convolution mostly run on its bf16 output, with their own float32
  parameters, e.g. batch norm's), channels-last memory; batch norm is *not* folded on this path:
  folded weights and biases rounded to bfloat16 moved the labels of the trained hannet on the real nuclei image
  (Dice 0.981 to the float32 output with folding, 0.995 without, ``docs/benchmarks.md``);
- CUDA: the same with bfloat16 on compute capability 8.0 and newer, float16 before;
- anything else: float32, the network untouched (exactly MONAI's path).

``"fp32"`` forces the untouched float32 path on any device; ``"bf16"`` and ``"fp16"`` force that dtype for the
weights and every activation (pure half precision: a little faster than autocast, less exact).
Stitching, blending and any softmax/argmax after the network stay in float32 whatever the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .capability import DeviceCapabilities, detect_capabilities

__all__ = ["PRECISIONS", "PrecisionPolicy", "resolve_policy"]

#: accepted values of every ``precision`` option (bundle key, CLI flag, predictor argument)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class PrecisionPolicy:
    """How a network runs for inference.

    Args:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the compute dtype of the network.
        channels_last: run with channels-last (2D) / channels-last-3d (3D) memory.
        fold_batch_norm: fold eval-mode batch norm into the preceding convolution.
        device_type: the device the policy was chosen for.
        reason: why it was chosen (for logs and benchmark records).
        autocast: keep the weights (and the parameters of normalisation layers) in float32 and run the network
            under :func:`torch.autocast` in ``name``'s dtype: convolutions and matmuls compute in that dtype, ops on
            their outputs follow autocast's rules. ``"auto"`` chooses it: on the trained hannet and the real nuclei
            image pure bfloat16 with folded batch norm gave Dice 0.981 to the float32 output and autocast 0.995, in
            the same time per window (``docs/benchmarks.md``).

    Raises:
        ValueError: on an unknown ``name``.
    """

    name: str = "fp32"
    channels_last: bool = False
    fold_batch_norm: bool = False
    device_type: str = "cpu"
    reason: str = ""
    autocast: bool = False

    def __post_init__(self) -> None:
        if self.name not in _DTYPES:
            raise ValueError(f"precision policy name must be one of {tuple(_DTYPES)}, got {self.name!r}.")

    @property
    def dtype(self) -> torch.dtype:
        """The network's compute dtype."""
        return _DTYPES[self.name]

    @property
    def is_reference(self) -> bool:
        """True for the untouched float32 path (the network and MONAI's inferer exactly as they are)."""
        return self.name == "fp32" and not self.channels_last and not self.fold_batch_norm

    @property
    def weight_dtype(self) -> torch.dtype:
        """The dtype of the prepared network's weights (float32 under autocast)."""
        return torch.float32 if self.autocast else self.dtype

    def memory_format(self, ndim: int) -> torch.memory_format:
        """Memory format for a tensor of ``ndim`` dimensions (4: 2D batch, 5: 3D batch) under this policy."""
        if not self.channels_last:
            return torch.contiguous_format
        if ndim == 4:
            return torch.channels_last
        if ndim == 5:
            return torch.channels_last_3d
        return torch.contiguous_format

    def cast_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the policy's dtype and memory format (unchanged for the float32 reference path)."""
        if self.is_reference or not x.is_floating_point():
            return x
        return x.to(dtype=self.weight_dtype).contiguous(memory_format=self.memory_format(x.ndim))


def resolve_policy(
    precision: str = "auto",
    device: str | torch.device = "cpu",
    capabilities: DeviceCapabilities | None = None,
    fold_batch_norm: bool = True,
) -> PrecisionPolicy:
    """Choose the inference precision policy for ``device``.

    Args:
        precision: ``"auto"`` (from the device's capabilities, see the module docstring), ``"fp32"``, ``"bf16"``
            or ``"fp16"``.
        device: the device the network runs on.
        capabilities: the device's capabilities (default: :func:`detect_capabilities`); pass made-up ones in tests.
        fold_batch_norm: fold batch norm into convolutions on the forced ``"bf16"``/``"fp16"`` paths (``"auto"``
            never folds: see the module docstring).

    Raises:
        ValueError: on an unknown ``precision``.

    Example::

        >>> resolve_policy("auto", "cpu").name   # 'bf16' on an AMX Xeon, 'fp32' on an older CPU
        >>> resolve_policy("fp32").is_reference
        True
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    dev_type = torch.device(device).type
    if precision == "fp32":
        return PrecisionPolicy("fp32", device_type=dev_type, reason="float32 requested")
    if precision in ("bf16", "fp16"):
        return PrecisionPolicy(precision, True, fold_batch_norm, device_type=dev_type, reason=f"{precision} requested")
    caps = capabilities if capabilities is not None else detect_capabilities(device)
    if caps.device_type == "cuda":
        name = "bf16" if caps.cuda_bf16 else "fp16"
        why = "GPU computes bfloat16 natively" if caps.cuda_bf16 else "GPU before compute capability 8.0: float16"
        return PrecisionPolicy(name, True, False, device_type="cuda", reason=why, autocast=True)
    if caps.device_type == "cpu" and caps.cpu_bf16:
        units = "AMX-BF16" if caps.amx_bf16 else "AVX-512-BF16"
        return PrecisionPolicy(
            "bf16", True, False, device_type="cpu", reason=f"CPU has {units}: bf16 autocast", autocast=True
        )
    return PrecisionPolicy(
        "fp32", device_type=caps.device_type, reason="no bfloat16/float16 units on this device: float32"
    )
