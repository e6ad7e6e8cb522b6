"""What the compute device can do fast: bfloat16/float16 matrix units on the CPU (AMX, AVX-512) or the GPU.

The precision policy (:mod:`.policy`) is chosen from a :class:`DeviceCapabilities`, so it can be tested with made-up
capabilities and so a benchmark can record what the machine offered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

__all__ = ["DeviceCapabilities", "cpu_flags", "detect_capabilities"]

_CPU_FLAGS_OF_INTEREST = ("amx_bf16", "amx_fp16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags listed in ``cpuinfo`` (Linux); an empty set where the file cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@dataclass(frozen=True)
class DeviceCapabilities:
    """The facts a precision policy is chosen from.

    Args:
        device_type: ``"cpu"`` or ``"cuda"`` (anything else is treated like a CPU without bf16 units).
        cpu_capability: ATen's kernel level, ``torch.backends.cpu.get_cpu_capability()`` (``"AVX512"``, ...).
        cpu_flags: the CPU feature flags of interest that are present (``amx_bf16``, ``avx512_bf16``, ...).
        cuda_name: the GPU's name (empty on CPU).
        cuda_bf16: the GPU computes bfloat16 natively (compute capability 8.0 or newer).
        num_threads: ``torch.get_num_threads()``.
    """

    device_type: str = "cpu"
    cpu_capability: str = ""
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    cuda_name: str = ""
    cuda_bf16: bool = False
    num_threads: int = 1

    @property
    def amx_bf16(self) -> bool:
        """The CPU has AMX tiles with bfloat16 (Sapphire Rapids and newer)."""
        return "amx_bf16" in self.cpu_flags

    @property
    def avx512_bf16(self) -> bool:
        """The CPU has the AVX-512 BF16 dot-product instructions (Cooper Lake, Zen 4 and newer)."""
        return "avx512_bf16" in self.cpu_flags

    @property
    def cpu_bf16(self) -> bool:
        """bfloat16 convolutions and matmuls run faster than float32 on this CPU (AMX or AVX-512 BF16)."""
        return self.amx_bf16 or self.avx512_bf16

    def as_dict(self) -> dict:
        out = asdict(self)
        out["cpu_flags"] = sorted(self.cpu_flags)
        out.update(amx_bf16=self.amx_bf16, avx512_bf16=self.avx512_bf16, cpu_bf16=self.cpu_bf16)
        return out


def detect_capabilities(device: str | torch.device = "cpu") -> DeviceCapabilities:
    """Detect the capabilities of ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``).

    The CPU's flags come from ``/proc/cpuinfo`` (Linux); ATen's ``get_cpu_capability()`` is recorded beside them.

    Raises:
        ValueError: if ``device`` is not a valid device string.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}.") from exc
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - older builds lack it; the flags still decide
        capability = ""
    flags = cpu_flags() & frozenset(_CPU_FLAGS_OF_INTEREST)
    name, bf16 = "", False
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        bf16 = torch.cuda.get_device_capability(index)[0] >= 8
    return DeviceCapabilities(
        device_type=dev.type,
        cpu_capability=capability,
        cpu_flags=flags,
        cuda_name=name,
        cuda_bf16=bf16,
        num_threads=torch.get_num_threads(),
    )
