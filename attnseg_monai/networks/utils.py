"""Network helpers: describe a network (parameters, FLOPs per pixel or voxel), check constructor arguments and input
sizes, run a network's ``attention_maps`` (:func:`attention_maps_method`), and sample a network with Monte Carlo
dropout (:func:`monte_carlo_dropout`)."""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.networks.utils import eval_mode
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "NetworkDescription",
    "attention_maps_method",
    "check_channels",
    "check_five_levels",
    "check_input_size",
    "check_spatial_dims",
    "count_parameters",
    "describe_network",
    "is_monte_carlo",
    "monte_carlo_dropout",
]


@dataclass(frozen=True)
class NetworkDescription:
    """What :func:`describe_network` measured.

    ``flops`` counts one multiply-add as two operations (the convention of ``torch.utils.flop_counter``), for
    one forward pass of a batch of one in eval mode; operations the counter does not model (element-wise
    activations, normalisation, pooling) are left out, as is usual for such figures.
    """

    name: str
    parameters: int
    trainable_parameters: int
    input_size: tuple[int, ...]
    flops: int
    flops_per_element: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        unit = "pixel" if len(self.input_size) == 2 else "voxel"
        size = "x".join(str(s) for s in self.input_size)
        return (
            f"{self.name}: {self.parameters / 1e6:.2f} M parameters, {self.flops / 1e9:.2f} GFLOP at {size}, "
            f"{self.flops_per_element / 1e3:.1f} kFLOP/{unit}"
        )


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``net`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def describe_network(
    net: nn.Module, input_size: Sequence[int], in_channels: int | None = None, name: str | None = None
) -> NetworkDescription:
    """Count the parameters of ``net`` and the FLOPs of one forward pass over an input of spatial ``input_size``.

    Args:
        net: the network; it is put in eval mode for the count and restored afterwards.
        input_size: spatial size of the input, 2 entries for 2D networks and 3 for 3D ones.
        in_channels: input channels; read from ``net.in_channels`` when not given.
        name: label for the description (default: the class name).

    Raises:
        ValueError: if the channel count cannot be found or ``input_size`` has not 2 or 3 positive entries.

    Example::

        >>> from attnseg_monai.networks import get_network
        >>> print(describe_network(get_network("mcsaunet", spatial_dims=2, in_channels=3, out_channels=2), (256, 256)))
    """
    size = tuple(int(s) for s in input_size)
    if len(size) not in (2, 3) or min(size) < 1:
        raise ValueError(f"input_size must have 2 or 3 positive entries, got {tuple(input_size)}.")
    channels = in_channels if in_channels is not None else getattr(net, "in_channels", None)
    if channels is None:
        raise ValueError(f"{type(net).__name__} has no 'in_channels' attribute: pass in_channels explicitly.")
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    counter = FlopCounterMode(display=False)
    with eval_mode(net), counter:
        net(torch.zeros((1, channels, *size), device=device, dtype=dtype))
    flops = int(counter.get_total_flops())
    return NetworkDescription(
        name=name or type(net).__name__,
        parameters=count_parameters(net),
        trainable_parameters=count_parameters(net, trainable_only=True),
        input_size=size,
        flops=flops,
        flops_per_element=flops / math.prod(size),
    )


def check_spatial_dims(spatial_dims: int, network: str) -> None:
    """Raise ``ValueError`` unless ``spatial_dims`` is 2 or 3."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"{network}: spatial_dims must be 2 or 3, got {spatial_dims}.")


def check_channels(network: str, **channels: int) -> None:
    """Raise ``ValueError`` naming the first argument of ``channels`` that is not a positive integer."""
    for key, value in channels.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{network}: {key} must be a positive integer, got {value!r}.")


def check_five_levels(network: str, features: Sequence[int]) -> tuple[int, ...]:
    """``features`` as a tuple when it is five positive integers (one per encoder level), else ``ValueError``."""
    features = tuple(features)
    if len(features) != 5 or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in features):
        raise ValueError(
            f"{network}: features must be five positive integers (one per encoder level, e.g. "
            f"(64, 128, 256, 512, 1024)), got {features}."
        )
    return features


def check_input_size(x: torch.Tensor, divisor: int, network: str) -> None:
    """Raise ``ValueError`` unless every spatial size of ``x`` (B, C, *spatial) is a positive multiple of ``divisor``.

    Written for TorchScript (no f-strings), so networks can call it at the top of ``forward``.
    """
    for size in x.shape[2:]:
        if size < divisor or size % divisor != 0:
            raise ValueError(
                network
                + ": every spatial size of the input must be a multiple of "
                + str(divisor)
                + " (valid sizes: "
                + str(divisor)
                + ", "
                + str(2 * divisor)
                + ", "
                + str(3 * divisor)
                + ", ...), got "
                + str(list(x.shape[2:]))
                + ". Pad the input (e.g. monai.transforms.DivisiblePad) or use sliding-window inference."
            )


_Maps = dict[str, torch.Tensor]


def attention_maps_method(method: Callable[..., _Maps]) -> Callable[..., _Maps]:
    """Decorator for a network's ``attention_maps(self, x, ...)``: the mechanics every attention network shares.

    The decorated method first checks ``x`` against the network's ``size_divisible_by`` (the ``ValueError`` of
    :func:`check_input_size`, naming the network's class), then runs its body under MONAI's
    :func:`monai.networks.utils.eval_mode`: eval mode (dropout off, batch norm on its running statistics) and no
    gradients, with the network's training mode restored afterwards, also when the body raises. The body only
    collects the maps that network defines and returns them by name; its docstring and signature stay its own.

    Example::

        class MyNet(nn.Module):
            @attention_maps_method
            def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                # x is checked, the network in eval mode without gradients: only collect the maps
                return self._run(x, collect=True)[1]
    """

    @functools.wraps(method)
    def run(self: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> _Maps:
        check_input_size(x, int(getattr(self, "size_divisible_by", 1)), type(self).__name__)
        with eval_mode(self):
            return method(self, x, *args, **kwargs)

    return run


def _dropout_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0.0]


def _monte_carlo_train(self: nn.Module, mode: bool = True) -> nn.Module:
    nn.Module.train(self, False)
    for layer in _dropout_layers(self):
        layer.train(mode)
    return self


def monte_carlo_dropout(net: nn.Module) -> nn.Module:
    """Make ``net.train()`` switch on only the dropout layers: Monte Carlo dropout sampling (Gal and Ghahramani 2016).

    MONAI Label's epistemic scoring (``EpistemicScoring`` of its ``monaibundle`` app) builds a bundle's network with
    ``dropout`` > 0, calls ``network.train()`` and runs the inference several times; the spread of the samples is the
    image's score. On a network with batch norm and deep supervision, plain ``train()`` would also normalise each window
    with its own batch statistics and return the deep-supervision list instead of one tensor. After this call
    ``train()`` puts the network in eval mode (batch norm on its running statistics, one output) with only the dropout
    layers sampling; ``eval()`` (``train(False)``) is unchanged. The network is changed in place and returned; the
    change survives ``copy.deepcopy``.

    Raises:
        ValueError: if ``net`` has no dropout layer with ``p > 0`` (every sample would be the same): build it with
            ``dropout > 0``.

    Example::

        >>> net = monte_carlo_dropout(get_network("hannet", spatial_dims=2, in_channels=3, out_channels=3, dropout=0.2))
        >>> net.train().training  # eval mode, dropout on
        False
    """
    if not _dropout_layers(net):
        raise ValueError(
            f"{type(net).__name__} has no dropout layer with p > 0, so Monte Carlo dropout samples would all be the "
            "same: build the network with dropout > 0 (MONAI Label: --conf epistemic_dropout 0.2)."
        )
    net.train = types.MethodType(_monte_carlo_train, net)  # type: ignore[method-assign]
    net._monte_carlo_dropout = True
    return net.train(net.training)


def is_monte_carlo(net: Any) -> bool:
    """Whether :func:`monte_carlo_dropout` was applied to ``net``: the bundles' ``sampling`` switch (probabilities
    instead of labels at the end of inference), false for any other network, e.g. one a user puts in
    ``network_def``."""
    return bool(getattr(net, "_monte_carlo_dropout", False))
