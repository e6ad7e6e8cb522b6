"""Contract cases for DANIE, its ablation switches and its presets (tiny widths so that the contract stays fast)."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["ABLATIONS", "CASES"]

# 3 stages, patch 2: inputs must be multiples of 8; covers the class in 2D and 3D.
_TINY = {
    "patch_size": 2,
    "embed_dims": (8, 16, 24),
    "depths": (1, 1, 1),
    "num_heads": (1, 2, 3),
    "sr_ratios": (4, 2, 1),
    "reduction": 4,
}
# The presets are functions over the class (covered above): shrunk to 2 stages so that they stay fast; their real
# configurations are built in tests/networks/test_danie.py.
_TINY_PRESET = {
    "patch_size": 2,
    "embed_dims": (8, 16),
    "depths": (1, 1),
    "num_heads": (1, 2),
    "sr_ratios": (2, 1),
    "reduction": 4,
}

#: one configuration per ablation switch value other than the default (tests/networks/test_danie.py uses them too)
ABLATIONS = {
    "sap": {"streams": "sap"},
    "hap": {"streams": "hap"},
    "spatial_first": {"hap_order": "spatial_first"},
    "no_calibration": {"dynamic_calibration": False},
    "add": {"fusion": "add"},
    "concat": {"fusion": "concat"},
    "full_attention": {"sap_attention": "full"},
}

CASES = [
    NetCase(
        name="danie",
        kwargs=_TINY,
        invalid_kwargs=[
            {"patch_size": 3},
            {"patch_size": 0},
            {"img_size": 12},
            {"img_size": (16, 16, 16)},
            {"num_heads": (1, 3, 3)},
            {"sr_ratios": (8, 2, 1)},
            {"sr_ratios": (3, 2, 1)},
            {"depths": (1, 1)},
            {"mlp_ratio": 0.0},
            {"dropout": 1.0},
            {"spatial_kernel_size": 4},
            {"streams": "all"},
            {"streams": None},
            {"hap_order": "channel-first"},
            {"dynamic_calibration": "yes"},
            {"dynamic_calibration": 1},
            {"fusion": "sum"},
            {"sap_attention": "linear"},
        ],
    ),
    # the seed's ablations (and the seed's full self-attention): each switch away from the default, 2D and 3D
    *(NetCase(name="danie", variant=variant, kwargs={**_TINY, **switch}) for variant, switch in ABLATIONS.items()),
    NetCase(name="danie_small", kwargs=_TINY_PRESET, dims=(2,)),
    NetCase(name="danie_base", kwargs=_TINY_PRESET, dims=(2,)),
    NetCase(name="danie_large", kwargs=_TINY_PRESET, dims=(2,), invalid_kwargs=[{"img_size": 6}]),
]
