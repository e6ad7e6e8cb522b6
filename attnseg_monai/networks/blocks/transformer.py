"""Transformer pieces for hierarchical vision encoders on 2D and 3D feature maps.

Patch embedding by a strided convolution, multi-head self-attention whose keys and values come from a spatially
reduced copy of the tokens (the spatial-reduction attention of PVT, Wang et al., ICCV 2021) and a feed-forward
network with a depthwise convolution between its two linear layers (the Mix-FFN of SegFormer / PVTv2), which gives
the tokens their position without an absolute position table tied to one input size.

Tokens are ``(B, N, C)`` with ``N`` the product of the spatial sizes; the blocks take the spatial sizes as a list so
they can turn tokens back into a ``(B, C, *spatial)`` map for their convolutions. Only plain torch operations are
used (``matmul``, ``softmax``, ``reshape``, ``permute``) so the blocks script with TorchScript and export to ONNX.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = [
    "PatchEmbedding",
    "SpatialReductionAttention",
    "MixFFN",
    "TransformerBlock",
    "map_to_tokens",
    "tokens_to_map",
]


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` -> ``(B, N, C)``."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_map(x: torch.Tensor, spatial: list[int]) -> torch.Tensor:
    """``(B, N, C)`` -> ``(B, C, *spatial)``."""
    return x.transpose(1, 2).reshape([x.shape[0], x.shape[2]] + spatial)


class PatchEmbedding(nn.Module):
    """Cut the input into patches with a strided convolution and normalise each patch vector (LayerNorm).

    With ``kernel_size == stride`` the patches do not overlap (the ViT patch embedding); with a larger kernel they
    overlap (PVTv2's overlapping patch embedding, used to merge patches between stages).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input map.
        embed_dim: length of each patch vector.
        kernel_size: convolution kernel (the patch size for non-overlapping patches).
        stride: convolution stride; every spatial size of the input must be a multiple of it.

    Returns (forward): tokens ``(B, N, embed_dim)`` and the spatial sizes of the token grid.

    Raises:
        ValueError: if ``kernel_size`` is smaller than ``stride`` or either is not positive.

    Example::

        >>> import torch
        >>> tokens, grid = PatchEmbedding(2, 1, 32, kernel_size=4, stride=4)(torch.zeros(1, 1, 64, 64))
        >>> tuple(tokens.shape), grid
        ((1, 256, 32), [16, 16])
        >>> tokens, grid = PatchEmbedding(3, 1, 32, kernel_size=4, stride=4)(torch.zeros(1, 1, 32, 32, 32))
        >>> tuple(tokens.shape), grid
        ((1, 512, 32), [8, 8, 8])
    """

    def __init__(self, spatial_dims: int, in_channels: int, embed_dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if stride < 1 or kernel_size < stride:
            raise ValueError(f"need 1 <= stride <= kernel_size, got stride={stride}, kernel_size={kernel_size}.")
        padding = kernel_size // 2 if kernel_size > stride else 0
        self.proj = Conv[Conv.CONV, spatial_dims](in_channels, embed_dim, kernel_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        x = self.proj(x)
        spatial = list(x.shape[2:])
        return self.norm(map_to_tokens(x)), spatial


class SpatialReductionAttention(nn.Module):
    """Multi-head self-attention with keys and values from a ``sr_ratio``-times coarser token grid (PVT).

    Queries keep the full grid; keys and values are computed from tokens merged by a ``sr_ratio`` strided
    convolution and a LayerNorm, so the attention matrix is ``N x N / sr_ratio**spatial_dims`` instead of ``N x N``.
    ``sr_ratio=1`` is ordinary multi-head self-attention.

    Args:
        spatial_dims: 2 or 3.
        dim: token width C.
        num_heads: number of heads; must divide ``dim``.
        sr_ratio: spatial reduction of keys and values; every size of the token grid must be a multiple of it.
        qkv_bias: whether the query/key/value projections have a bias.
        attn_dropout: dropout on the attention probabilities.
        proj_dropout: dropout after the output projection.

    Raises:
        ValueError: if ``num_heads`` does not divide ``dim`` or ``sr_ratio < 1``.

    Example::

        >>> import torch
        >>> att = SpatialReductionAttention(2, 32, num_heads=2, sr_ratio=4)  # keys from a 4x4 grid
        >>> tuple(att(torch.zeros(1, 256, 32), [16, 16]).shape)
        (1, 256, 32)
        >>> att3 = SpatialReductionAttention(3, 32, num_heads=2, sr_ratio=2)  # keys from a 4x4x4 grid
        >>> tuple(att3(torch.zeros(1, 512, 32), [8, 8, 8]).shape)
        (1, 512, 32)
    """

    __constants__ = ["num_heads", "head_dim", "scale", "reduce"]

    def __init__(
        self,
        spatial_dims: int,
        dim: int,
        num_heads: int,
        sr_ratio: int = 1,
        qkv_bias: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"num_heads must be a positive divisor of dim={dim}, got {num_heads}.")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = float(self.head_dim) ** -0.5
        self.reduce = sr_ratio > 1
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        if self.reduce:
            self.sr = Conv[Conv.CONV, spatial_dims](dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)
        else:
            self.sr = None
            self.sr_norm = None

    def forward(self, x: torch.Tensor, spatial: list[int]) -> torch.Tensor:
        b, n, c = x.shape[0], x.shape[1], x.shape[2]
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        kv_src = x
        if self.reduce:
            kv_src = self.sr_norm(map_to_tokens(self.sr(tokens_to_map(x, spatial))))
        kv = self.kv(kv_src).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        out = torch.matmul(self.attn_drop(attn), v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class MixFFN(nn.Module):
    """Feed-forward network ``Linear -> depthwise 3x3(x3) conv -> GELU -> Linear`` (SegFormer's Mix-FFN).

    The depthwise convolution mixes each token with its neighbours, which is how the encoder knows where tokens are
    (a conditional positional encoding) without a learned table that would fix the input size.

    Args:
        spatial_dims: 2 or 3.
        dim: token width.
        hidden_dim: width of the hidden layer.
        dropout: dropout after the activation and after the output layer.

    Example::

        >>> import torch
        >>> tuple(MixFFN(2, 32, 128)(torch.zeros(1, 64, 32), [8, 8]).shape)
        (1, 64, 32)
        >>> tuple(MixFFN(3, 32, 128)(torch.zeros(1, 64, 32), [4, 4, 4]).shape)
        (1, 64, 32)
    """

    def __init__(self, spatial_dims: int, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = Conv[Conv.CONV, spatial_dims](hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, spatial: list[int]) -> torch.Tensor:
        x = self.fc1(x)
        x = map_to_tokens(self.dwconv(tokens_to_map(x, spatial)))
        x = self.drop(self.act(x))
        return self.drop(self.fc2(x))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block ``x + SRA(LN(x))`` then ``x + MixFFN(LN(x))``.

    Args:
        spatial_dims: 2 or 3.
        dim: token width.
        num_heads: attention heads (a divisor of ``dim``).
        mlp_ratio: hidden width of the feed-forward network as a multiple of ``dim``.
        sr_ratio: key/value spatial reduction of the attention.
        dropout: dropout after the attention projection and in the feed-forward network.
        attn_dropout: dropout on the attention probabilities.

    Raises:
        ValueError: from :class:`SpatialReductionAttention` on bad heads or ratios, or if ``mlp_ratio <= 0``.

    Example::

        >>> import torch
        >>> tuple(TransformerBlock(2, 32, num_heads=1, sr_ratio=2)(torch.zeros(1, 64, 32), [8, 8]).shape)
        (1, 64, 32)
        >>> tuple(TransformerBlock(3, 32, num_heads=1, sr_ratio=2)(torch.zeros(1, 64, 32), [4, 4, 4]).shape)
        (1, 64, 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        sr_ratio: int = 1,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}.")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SpatialReductionAttention(spatial_dims, dim, num_heads, sr_ratio, True, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(spatial_dims, dim, max(1, int(round(dim * mlp_ratio))), dropout)

    def forward(self, x: torch.Tensor, spatial: list[int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), spatial)
        return x + self.mlp(self.norm2(x), spatial)
