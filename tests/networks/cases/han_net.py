"""Contract settings for Han-Net (``hannet``): three levels of tiny widths, so inputs are multiples of 4; one case per
decoder/heads/attention switch besides the default configuration."""

from __future__ import annotations

from tests.networks.cases import NetCase

__all__ = ["CASES"]

_TINY = {"features": (4, 8, 16), "channel_reduction": 2}
_INVALID = [
    {"features": (8,)},
    {"features": (4, 0, 16)},
    {"dropout": 1.0},
    {"upsample": "bicubic"},
    {"channel_reduction": 0},
    {"spatial_kernel_size": 4},
    {"skips": "dense"},
    {"heads": "full"},
    {"skips": "seed", "heads": "full_resolution"},
    {"use_spatial_attention": "no"},
    {"use_channel_attention": 0},
    {"deep_supervision": "yes"},
]


def _case(variant: str = "", **switches) -> NetCase:
    return NetCase(
        name="hannet",
        variant=variant,
        kwargs={**_TINY, **switches},
        deep_supervision={"deep_supervision": True},
        deep_supervision_outputs=3,  # fused map + one head per top-row node X^{0,1..2} or per decoder level 0..1
        invalid_kwargs=_INVALID if not variant else [],
    )


CASES = [
    _case(),
    _case("per_level_heads", heads="per_level"),
    _case("seed_skips", skips="seed", heads="per_level"),
    _case("seed_skips_nontrainable", skips="seed", heads="per_level", upsample="nontrainable"),
    _case("no_spatial_attention", use_spatial_attention=False),
    _case("no_channel_attention", use_channel_attention=False),
    _case(
        "no_attention_seed", skips="seed", heads="per_level", use_spatial_attention=False, use_channel_attention=False
    ),
]
