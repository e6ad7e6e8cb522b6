"""Which engine runs a prepared network: torch (PyTorch's own kernels) or OpenVINO (Intel's inference runtime).

The fast path prepares a network once per policy (:func:`~.prepare.prepare_for_inference`); the engine decides what
runs it. ``"auto"`` (the default everywhere: bundle configs, ``attnseg infer``, the inferers) chooses:

- **OpenVINO** on the CPU when the optional extra is installed (``pip install "attnseg-monai[openvino]"``) and the
  precision is ``"auto"``: the network is converted once (``openvino.convert_model`` on the torch module, cached on
  disk, see :mod:`.openvino_engine`) and compiled for the CPU with OpenVINO's default hints (bfloat16 on AMX /
  AVX-512-BF16 CPUs, float32 elsewhere). Measured on a 2-core AMX Xeon: 1.15-2.3x faster than torch's bf16
  autocast per window (``docs/benchmarks.md``);
- **torch** everywhere else: CUDA devices, a precision asked for explicitly (``"fp32"`` stays MONAI's float32
  path exactly; ``"bf16"``/``"fp16"`` are torch's pure half precision), OpenVINO not installed, a network in
  training mode or whose dropout samples (MONAI Label's Monte Carlo dropout: OpenVINO would freeze dropout off).

``"openvino"`` asks for OpenVINO with the requested precision (``"fp32"`` -> its float32 hint, ``"bf16"``,
``"fp16"``); ``"torch"`` never converts. Whatever was chosen, a network OpenVINO cannot convert, compile, or run
falls back to torch with one warning that names the network and the reason (:class:`.openvino_engine.OpenVINONetwork`).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from torch import nn

from .policy import PrecisionPolicy
from .prepare import FastNetwork, prepare_for_inference, sampling_dropout

__all__ = ["ENGINES", "choose_engine", "openvino_available", "prepare_engine"]

logger = logging.getLogger(__name__)

#: accepted values of every ``engine`` option (bundle key, CLI flag, inferer argument)
ENGINES = ("auto", "torch", "openvino")

#: OpenVINO's ``INFERENCE_PRECISION_HINT`` for each precision (``"auto"``: OpenVINO's own default for the CPU)
OPENVINO_HINTS = {"auto": None, "fp32": "f32", "bf16": "bf16", "fp16": "f16"}

INSTALL_HINT = "pip install 'attnseg-monai[openvino]'"


def openvino_available() -> bool:
    """True when the ``openvino`` package imports (the ``openvino`` extra is installed)."""
    try:
        importlib.import_module("openvino")
    except Exception:  # noqa: BLE001 - a broken install counts as missing: torch runs instead
        return False
    return True


def check_engine(engine: Any) -> str:
    """``engine`` when it is one of :data:`ENGINES`.

    Raises:
        ValueError: otherwise.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
    return str(engine)


def choose_engine(
    engine: str, policy: PrecisionPolicy, network: Any = None, precision: str = "auto"
) -> tuple[str, str]:
    """The engine that runs ``network`` under ``policy``, and why: ``("torch" | "openvino", reason)``.

    Args:
        engine: ``"auto"``, ``"torch"`` or ``"openvino"`` (see the module docstring).
        policy: the precision policy resolved for the device.
        network: the network (its training mode and sampling dropout keep it on torch); ``None`` skips those checks.
        precision: the precision that was *asked for* (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``): ``"auto"``
            lets ``engine="auto"`` choose OpenVINO; an explicit one keeps ``"auto"`` on torch.

    Raises:
        ValueError: on an unknown ``engine``.

    Example::

        >>> choose_engine("auto", resolve_policy("auto", "cpu"))    # with the openvino extra installed
        ('openvino', 'OpenVINO on the CPU (default hints)')
    """
    check_engine(engine)
    if engine == "torch":
        return "torch", "engine='torch' requested"
    if policy.device_type != "cpu":
        return "torch", f"OpenVINO runs on the CPU here; {policy.device_type} runs torch"
    if isinstance(network, nn.Module):
        if network.training:
            return "torch", "the network is in training mode"
        if sampling_dropout(network):
            return "torch", "its dropout samples (Monte Carlo dropout); OpenVINO would switch it off"
    if engine == "auto" and precision != "auto":
        return "torch", f"precision {precision!r} was asked for: torch computes it (engine='openvino' to convert)"
    if not openvino_available():
        return "torch", f"OpenVINO is not installed ({INSTALL_HINT})"
    hint = OPENVINO_HINTS.get(precision)
    return "openvino", "OpenVINO on the CPU (" + ("default hints" if hint is None else f"{hint} hint") + ")"


def network_name(network: Any) -> str:
    """A short name of ``network`` for messages (its class name)."""
    net = network.module if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else network
    return type(net).__name__


def prepare_engine(
    net: nn.Module, policy: PrecisionPolicy, engine: str = "auto", precision: str = "auto", name: str | None = None
) -> FastNetwork:
    """:func:`~.prepare.prepare_for_inference` on the engine :func:`choose_engine` picks: a :class:`FastNetwork`
    (torch), or an :class:`~.openvino_engine.OpenVINONetwork` (a ``FastNetwork`` that runs OpenVINO and keeps the
    torch copy for what OpenVINO cannot do: attention maps, extra arguments, a failure).

    Args:
        net: the network.
        policy: the precision policy for the device.
        engine: ``"auto"``, ``"torch"`` or ``"openvino"``.
        precision: the precision asked for (see :func:`choose_engine`).
        name: the network's name in messages (default: its class name).

    Raises:
        ValueError: on an unknown ``engine`` or a ``net`` that is not an ``nn.Module``.
    """
    choice, reason = choose_engine(engine, policy, net, precision)
    name = name or network_name(net)
    if engine == "openvino" and choice == "torch":
        logger.warning("engine='openvino' was asked for, but %s runs on torch: %s.", name, reason)
    fast = prepare_for_inference(net, policy)
    if choice == "torch":
        return fast
    from .openvino_engine import OpenVINONetwork

    return OpenVINONetwork(fast, net, hint=OPENVINO_HINTS.get(precision), name=name)
