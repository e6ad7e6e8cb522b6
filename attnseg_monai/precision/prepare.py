"""Make a network ready for fast inference: eval mode, batch norm folded into convolutions, dtype and layout.

Folding rewrites ``y = BN(conv(x))`` (eval mode: ``gamma * (conv(x) - mean) / sqrt(var + eps) + beta``) as one
convolution with scaled weights and a new bias, and replaces the batch norm by ``nn.Identity``. The pattern is
found structurally: inside a sequential container (``nn.Sequential``, MONAI's ``Convolution`` = conv + ADN,
``DoubleConv``), a convolution whose next sibling is a ``BatchNorm`` or a sequential container whose first entry
is one (MONAI's ``Convolution(..., norm="batch")`` is ``[conv, ADN[N, D, A]]``). Containers that override
``forward`` are never entered: their forward need not run the children in order.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .policy import PrecisionPolicy

__all__ = ["FastNetwork", "fold_batch_norm", "instance_norm_to_group_norm", "prepare_for_inference"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _runs_children_in_order(module: nn.Module) -> bool:
    """Sequential containers whose forward feeds each child's output to the next (and nothing else)."""
    if not isinstance(module, nn.Sequential):
        return False
    return type(module).forward is nn.Sequential.forward


def _leading_batch_norm(module: nn.Module) -> tuple[nn.Module, str, nn.Module] | None:
    """``(parent, name, bn)`` when ``module`` is a batch norm or starts (recursively) with one."""
    while _runs_children_in_order(module) and len(module) > 0:
        name, first = next(iter(module.named_children()))
        if isinstance(first, _BATCH_NORMS):
            return module, name, first
        module = first
    return None


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    if not isinstance(conv, _CONVS) or not isinstance(bn, _BATCH_NORMS):
        return False
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return False  # uses batch statistics even in eval mode
    transposed = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    if transposed and conv.groups != 1:
        return False
    return conv.out_channels == bn.num_features


@torch.no_grad()
def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    """Fold eval-mode ``bn`` into ``conv`` in place (computed in float64)."""
    dtype = conv.weight.dtype
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    transposed = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    shape = [1, -1] if transposed else [-1, 1]
    shape += [1] * (conv.weight.ndim - 2)
    conv.weight.copy_((conv.weight.double() * scale.reshape(shape)).to(dtype))
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    new_bias = (bias * scale + shift).to(dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=False)
    else:
        conv.bias.copy_(new_bias)


def fold_batch_norm(net: nn.Module) -> int:
    """Fold every eval-mode ``conv -> BatchNorm`` pair of ``net`` in place; returns how many were folded.

    Only for inference: the folded network computes what the eval-mode network computed (to float32 rounding),
    but training it again would no longer normalise.

    Raises:
        ValueError: if ``net`` is in training mode (batch norm then uses batch statistics: nothing to fold).
    """
    if net.training:
        raise ValueError("fold_batch_norm needs an eval-mode network: call net.eval() first.")
    folded = 0
    for container in list(net.modules()):
        if not _runs_children_in_order(container):
            continue
        children = list(container.named_children())
        for (_, conv), (next_name, nxt) in zip(children[:-1], children[1:]):
            if not isinstance(conv, _CONVS):
                continue
            if isinstance(nxt, _BATCH_NORMS):
                parent, name, bn = container, next_name, nxt
            else:
                found = _leading_batch_norm(nxt)
                if found is None:
                    continue
                parent, name, bn = found
            if not _foldable(conv, bn):
                continue
            _fold_into(conv, bn)
            setattr(parent, name, nn.Identity())
            folded += 1
    return folded


def instance_norm_to_group_norm(net: nn.Module) -> int:
    """Replace every ``InstanceNorm`` without running statistics by the equal ``GroupNorm(C, C)``, in place.

    Both normalise each channel of each sample over its spatial positions (the same function, to float32
    rounding), but PyTorch's CPU group norm has channels-last and bfloat16 kernels, while instance norm reshapes the
    input to ``(1, B * C, ...)`` and copies it out of channels-last at every call (measured 2.5x on MONAI's
    ``BasicUNet`` in bf16 + channels-last). Returns how many were replaced.
    """
    replaced = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
                group = nn.GroupNorm(child.num_features, child.num_features, eps=child.eps, affine=child.affine)
                if child.affine:
                    with torch.no_grad():
                        group.weight.copy_(child.weight)
                        group.bias.copy_(child.bias)
                group.to(device=next(child.parameters(), torch.empty(0)).device)
                setattr(parent, name, group)
                replaced += 1
    return replaced


def _spatial_dims(net: nn.Module) -> int | None:
    dims = getattr(net, "spatial_dims", None)
    if dims in (2, 3):
        return int(dims)
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
    return None


class FastNetwork(nn.Module):
    """A network prepared by :func:`prepare_for_inference`: casts each input to the policy's dtype and memory
    format, runs the prepared network, and returns float32 outputs (tensors, or lists/tuples/dicts of them).

    ``attention_maps`` is forwarded to the wrapped network when it has one (maps returned in float32).

    Args:
        module: the prepared network.
        policy: the precision policy it was prepared for.
        batch_norms_folded: how many batch norms were folded (for records).
    """

    def __init__(self, module: nn.Module, policy: PrecisionPolicy, batch_norms_folded: int = 0) -> None:
        super().__init__()
        self.module = module
        self.policy = policy
        self.batch_norms_folded = batch_norms_folded
        for key in ("spatial_dims", "in_channels", "out_channels", "size_divisible_by"):
            if hasattr(module, key):
                setattr(self, key, getattr(module, key))

    @staticmethod
    def _to_float(out: Any) -> Any:
        if isinstance(out, torch.Tensor):
            return out.float() if out.is_floating_point() else out
        if isinstance(out, (list, tuple)):
            return type(out)(FastNetwork._to_float(o) for o in out)
        if isinstance(out, dict):
            return {k: FastNetwork._to_float(v) for k, v in out.items()}
        return out

    def _run(self, fn: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.policy.autocast:
            with torch.autocast(device_type=self.policy.device_type, dtype=self.policy.dtype):
                return fn(self.policy.cast_input(x), *args, **kwargs)
        return fn(self.policy.cast_input(x), *args, **kwargs)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = self._run(self.module, x, *args, **kwargs)
        if self.policy.is_reference:
            return out
        return self._to_float(out).contiguous() if isinstance(out, torch.Tensor) else self._to_float(out)

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The wrapped network's ``attention_maps`` on the cast input, in float32.

        Raises:
            AttributeError: if the wrapped network has no ``attention_maps``.
        """
        maps = self._run(self.module.attention_maps, x)
        return {k: v.float() for k, v in maps.items()}


def sampling_dropout(net: nn.Module) -> tuple[str, ...]:
    """Names of the dropout layers of ``net`` that sample (training mode, ``p > 0``): on an eval-mode network, one set
    up for Monte Carlo dropout (:func:`attnseg_monai.networks.utils.monte_carlo_dropout`)."""
    return tuple(
        name
        for name, m in net.named_modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and float(m.p) > 0.0
    )


def prepare_for_inference(net: nn.Module, policy: PrecisionPolicy, copy_network: bool = True) -> FastNetwork:
    """A :class:`FastNetwork` for ``net`` under ``policy``: eval mode, no gradients, batch norm folded (when the
    policy says so), instance norm run as the equal group norm (channels-last policies), weights in the policy's
    dtype and memory format. Dropout layers that sample in ``net`` (:func:`sampling_dropout`: Monte Carlo dropout)
    still sample in the prepared network.

    The float32 reference policy leaves the network untouched (only ``eval()``), so its outputs equal MONAI's.

    Args:
        net: the network (any ``nn.Module``); its ``spatial_dims`` attribute, or its convolutions, give the layout.
        policy: from :func:`~.policy.resolve_policy`.
        copy_network: prepare a deep copy and leave ``net`` as it is (default); ``False`` changes ``net`` in place.

    Raises:
        ValueError: if ``net`` is not an ``nn.Module``.

    Examples::

        >>> from attnseg_monai.precision import prepare_for_inference, resolve_policy
        >>> fast = prepare_for_inference(HanNet(2, 3, 2), resolve_policy("bf16"))
        >>> fast(torch.rand(1, 3, 256, 256)).dtype            # bf16 inside, float32 out
        torch.float32
        >>> fast3d = prepare_for_inference(HanNet(3, 1, 2, features=(8, 16, 32)), resolve_policy("auto"))
    """
    if not isinstance(net, nn.Module):
        raise ValueError(f"prepare_for_inference needs an nn.Module, got {type(net).__name__}.")
    if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        net = net.module  # the wrapped network: inference needs no gradient synchronisation
    sampling = sampling_dropout(net)
    with torch.inference_mode(False), torch.no_grad():
        module = copy.deepcopy(net) if copy_network else net
        module.eval()
        for name in sampling:
            module.get_submodule(name).train()
        for p in module.parameters():
            p.requires_grad_(False)
        folded = 0
        if policy.is_reference:
            return FastNetwork(module, policy, 0)
        if policy.fold_batch_norm:
            folded = fold_batch_norm(module)
        if policy.channels_last:
            instance_norm_to_group_norm(module)
        module.to(dtype=policy.weight_dtype)
        dims = _spatial_dims(module)
        if policy.channels_last and dims is not None:
            module.to(memory_format=policy.memory_format(dims + 2))
    return FastNetwork(module, policy, folded)
