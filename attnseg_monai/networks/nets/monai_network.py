"""MONAI's reference segmentation networks behind this package's network contract, for comparison rows.

A bundle compares its network with MONAI's ``BasicUNet``, ``BasicUNetPlusPlus``, ``AttentionUnet`` or ``UNet`` (with
``num_res_units``: a U-Net of residual units, Kerfoot et al. 2018) by building
:class:`MonaiNetwork` instead: a registered network, so the record beside the weights describes it (the MONAI class's
name and every argument, MONAI's defaults filled in) and rebuilds it, and one output convention for the losses and
inferers of the bundles: a Tensor in eval mode, ``[final, *others]`` in training mode when the MONAI network returns
several outputs (deep supervision).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from monai.networks import nets as monai_nets
from monai.utils import ensure_tuple
from torch import nn

from ..registry import register_network
from ..utils import check_channels, check_input_size, check_spatial_dims

__all__ = ["MONAI_NETWORKS", "MonaiNetwork"]


def _four_poolings(arguments: dict[str, Any]) -> int:
    return 16


def _strides(arguments: dict[str, Any]) -> int:
    return math.prod(max(ensure_tuple(s)) for s in arguments["strides"])


#: the MONAI classes :class:`MonaiNetwork` builds, each with the rule that gives its ``size_divisible_by``
MONAI_NETWORKS: dict[str, Callable[[dict[str, Any]], int]] = {
    "BasicUNet": _four_poolings,
    "BasicUNetPlusPlus": _four_poolings,
    "AttentionUnet": _strides,
    "UNet": _strides,
}
_TASK = ("spatial_dims", "in_channels", "out_channels")


@register_network("monai")
class MonaiNetwork(nn.Module):
    """One of MONAI's reference networks (:data:`MONAI_NETWORKS`), built by name, as a network of this package.

    The network is ``monai.networks.nets.<architecture>(spatial_dims, in_channels, out_channels, **kwargs)``, kept
    as the submodule ``net`` (state-dict keys ``net.*``). What it adds:

    - a record: :func:`attnseg_monai.networks.network_config` gives ``architecture`` and every argument of the MONAI
      class, its defaults filled in, so a checkpoint rebuilds the same network even if a later MONAI changes a default;
    - one output convention: in eval mode a Tensor (``BasicUNetPlusPlus`` returns a list: its last entry, the final
      map); in training mode, a network that returns several maps (``BasicUNetPlusPlus(deep_supervision=True)``)
      gives ``[final, *the others]``, the final map first as ``monai.losses.DeepSupervisionLoss`` weights it;
    - the contract's checks: ``ValueError`` on unknown names or arguments, ``size_divisible_by`` (16 for the basic
      U-Nets, the product of the strides for ``AttentionUnet`` and ``UNet``) checked in ``forward``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (logits).
        architecture: the MONAI class, one of :data:`MONAI_NETWORKS`.
        kwargs: the MONAI class's other arguments (e.g. ``features``; ``channels`` and ``strides`` for
            ``AttentionUnet`` and ``UNet``; ``num_res_units`` for ``UNet``).

    Raises:
        ValueError: on a ``spatial_dims`` other than 2 or 3, non-positive channel counts, an unknown
            ``architecture``, an argument the MONAI class does not take or a required one missing; in ``forward``,
            on a spatial size that is not a multiple of ``size_divisible_by``.

    Examples::

        >>> net = MonaiNetwork(2, 3, 3, architecture="BasicUNetPlusPlus", features=(8, 8, 16, 32, 64, 8),
        ...                    deep_supervision=True)
        >>> [o.shape for o in net.train()(torch.randn(1, 3, 64, 64))][0]
        torch.Size([1, 3, 64, 64])
        >>> net = MonaiNetwork(3, 1, 2, architecture="AttentionUnet", channels=(8, 16, 32), strides=(2, 2))
        >>> net.size_divisible_by, net.eval()(torch.randn(1, 1, 16, 16, 16)).shape
        (4, torch.Size([1, 2, 16, 16, 16]))
        >>> net = MonaiNetwork(2, 3, 2, architecture="UNet", channels=(8, 16, 32), strides=(2, 2), num_res_units=2)
        >>> net.size_divisible_by, net.eval()(torch.randn(1, 3, 32, 32)).shape
        (4, torch.Size([1, 2, 32, 32]))
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, *, architecture: str = "BasicUNet", **kwargs: Any
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "MonaiNetwork")
        check_channels("MonaiNetwork", in_channels=in_channels, out_channels=out_channels)
        if architecture not in MONAI_NETWORKS:
            raise ValueError(
                f"MonaiNetwork: architecture must be one of {tuple(MONAI_NETWORKS)}, got {architecture!r}."
            )
        name = architecture
        cls = getattr(monai_nets, name)
        parameters = dict(inspect.signature(cls.__init__).parameters)
        parameters.pop("self", None)
        accepted = [p for p in parameters if p not in _TASK]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(f"MonaiNetwork: {name} takes no argument {unknown}; its arguments are {accepted}.")
        missing = [p for p in accepted if p not in kwargs and parameters[p].default is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"MonaiNetwork: {name} needs the argument(s) {missing}.")
        arguments = {p: kwargs.get(p, parameters[p].default) for p in accepted}
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.architecture = name
        self.arguments = arguments
        self.size_divisible_by: int = MONAI_NETWORKS[name](arguments)
        self.net = cls(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **arguments)

    def recorded_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """What the record holds (see :mod:`attnseg_monai.networks.registry`): the task, ``architecture`` and every
        argument of the MONAI class, defaults included."""
        return {
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "architecture": self.architecture,
            **self.arguments,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, self.size_divisible_by, "MonaiNetwork")
        out = self.net(x)
        if isinstance(out, torch.Tensor):
            return out
        if self.training and len(out) > 1:
            return [out[-1]] + out[:-1]
        return out[-1]
