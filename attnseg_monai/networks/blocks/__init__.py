"""Building blocks shared by the networks: one concept per file."""

from __future__ import annotations

from .cbam import ChannelAttention, SpatialAttention
from .conv_blocks import DoubleConv
from .csa import CSABlock, CSAEncoderStage
from .dual_attention_encoder import DualAttentionStage
from .full_scale_skip import FullScaleDecoderNode, full_scale_resample
from .grid_attention import GridAttentionGate
from .hierarchical_attention import ConvStem, DynamicCalibration, HierarchicalAttentionBlock
from .hybrid_attention import FullScaleNode, NestedNode, SkipSpatialAttention
from .joint_preservation import JointPreservation, NonLocalBlock
from .neighbourhood_attention import NeighbourhoodAttention
from .skip_upsample import SkipUpBlock
from .stream_fusion import AdditionFusion, ConcatenationFusion
from .transformer import MixFFN, PatchEmbedding, SpatialReductionAttention, TransformerBlock

__all__ = [
    "AdditionFusion",
    "CSABlock",
    "CSAEncoderStage",
    "ChannelAttention",
    "ConcatenationFusion",
    "ConvStem",
    "DoubleConv",
    "DualAttentionStage",
    "DynamicCalibration",
    "FullScaleDecoderNode",
    "FullScaleNode",
    "GridAttentionGate",
    "HierarchicalAttentionBlock",
    "JointPreservation",
    "MixFFN",
    "NeighbourhoodAttention",
    "NestedNode",
    "NonLocalBlock",
    "PatchEmbedding",
    "SkipSpatialAttention",
    "SkipUpBlock",
    "SpatialAttention",
    "SpatialReductionAttention",
    "TransformerBlock",
    "full_scale_resample",
]
