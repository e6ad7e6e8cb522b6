"""Contract settings for :class:`attnseg_monai.networks.nets.grid_attention_unet.GridAttentionUNet`: the default
configuration, and the switches the experiment rows use (gates off: ``attention_levels=()``; the authors' two gates
per level: ``attention_heads=2``)."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

_FEATURES = (4, 8, 8, 16)  # 3 skips + bottleneck: size_divisible_by = 8

CASES = [
    NetCase(
        name="gridattentionunet",
        kwargs={"features": _FEATURES},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=len(_FEATURES),  # fused output + one head per decoder level
        invalid_kwargs=[
            {"features": (8,)},
            {"features": (4, 0, 8)},
            {"attention_levels": (3,)},
            {"attention_levels": (-1,)},
            {"attention_levels": (1, 1)},
            {"attention_levels": 1},
            {"attention_levels": (1.5,)},
            {"attention_heads": 0},
            {"dropout": 1.0},
        ],
    ),
    NetCase(
        name="gridattentionunet",
        variant="gates_off",
        kwargs={"features": _FEATURES, "attention_levels": ()},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=len(_FEATURES),
    ),
    NetCase(
        name="gridattentionunet",
        variant="two_heads",
        kwargs={"features": _FEATURES, "attention_heads": 2},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=len(_FEATURES),
    ),
]
