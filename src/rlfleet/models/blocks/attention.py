"""Attention blocks: squeeze-and-excitation (``se``), CBAM (``cbam``) and multi-head
self-attention over image patches or entity sets (``attention``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rlfleet.config.rules import Count
from rlfleet.errors import ConfigError
from rlfleet.models.blocks.base import Block, ShapeError, image_float, image_shape

ScaleActivation = Literal["sigmoid", "hardsigmoid"]
"""The gate of an SE block: ``sigmoid`` (Hu et al. 2018) or ``hardsigmoid`` (MobileNetV3)."""
GATES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}


class SqueezeExcitation(Block):
    """``[*lead, C, H, W] -> [*lead, C, H, W]``: the input scaled per channel by
    ``gate(fc2(relu(fc1(mean_hw(x)))))`` (Hu et al. 2018), ``fc1``/``fc2`` being 1x1 convs
    ``C -> squeeze -> C`` with biases (the layout and names of ``torchvision.ops.SqueezeExcitation``).

    Args:
        input_shape: ``(C, H, W)``.
        reduction: ``squeeze = max(1, C // reduction)`` when ``squeeze_channels`` is not given.
        squeeze_channels: the bottleneck width.
        scale_activation: ``sigmoid`` or ``hardsigmoid``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        reduction: Count = 16,
        squeeze_channels: Count | None = None,
        scale_activation: ScaleActivation = "sigmoid",
    ):
        super().__init__(input_shape)
        c = image_shape(input_shape)[0]
        squeeze = squeeze_channels or max(1, c // reduction)
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.gate = GATES[scale_activation]()
        self.output_shape = self.input_shape

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = image_float(x)
        scale = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return self.gate(scale) * x


class Cbam(Block):
    """``[*lead, C, H, W] -> [*lead, C, H, W]``: the convolutional block attention module (Woo et
    al. 2018). Channel attention ``sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))`` (one shared
    MLP ``C -> C // reduction -> C`` with ReLU, as 1x1 convs) scales the channels; then spatial
    attention ``sigmoid(conv([mean_c(x), max_c(x)]))`` (one ``kernel x kernel`` conv, 2 -> 1
    channels) scales the positions.

    Args:
        input_shape: ``(C, H, W)``.
        reduction: the channel MLP's bottleneck is ``max(1, C // reduction)``.
        kernel: side of the spatial attention conv (odd; padding keeps the size).
    """

    def __init__(self, input_shape: Sequence[int], reduction: Count = 16, kernel: Count = 7):
        super().__init__(input_shape)
        c = image_shape(input_shape)[0]
        if kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd so that padding keeps the size, got {kernel}")
        hidden = max(1, c // reduction)
        self.channel_mlp = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c, 1))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)
        self.output_shape = self.input_shape

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = image_float(x)
        avg, peak = x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
        x = x * torch.sigmoid(self.channel_mlp(avg) + self.channel_mlp(peak))
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class MultiHeadSelfAttention(nn.Module):
    """``[N, L, D] -> [N, L, D]``: scaled dot-product attention of ``heads`` heads, queries, keys
    and values from one linear layer, the heads joined by an output linear layer."""

    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(1, 2).reshape(n, length, dim))


class TransformerLayer(nn.Module):
    """``[N, L, D] -> [N, L, D]``: pre-norm transformer encoder layer,
    ``x + mha(ln1(x))`` then ``+ mlp(ln2(x))`` (MLP ``D -> 4D -> D`` with GELU)."""

    def __init__(self, embed_dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attention = MultiHeadSelfAttention(embed_dim, heads)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(), nn.Linear(4 * embed_dim, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SelfAttention(Block):
    """Transformer encoder over image patches or an entity set.

    - Image input ``[*lead, C, H, W]``: non-overlapping ``patch_size`` patches, each projected
      linearly to ``embed_dim`` (a conv with kernel = stride = patch size; uint8 scaled to
      [0, 1]), plus a learned position embedding per patch (initialised N(0, 0.02^2), as ViT):
      ``L = (H / p) * (W / p)`` tokens.
    - Entity set ``[*lead, L, F]``: each entity projected linearly to ``embed_dim``; no position
      embedding, so the output is equivariant to the entities' order (``pool: mean``: invariant).

    Then ``layers`` `TransformerLayer`s and a final LayerNorm. ``pool``: ``mean`` over tokens
    -> ``[*lead, embed_dim]``; ``flatten`` -> ``[*lead, L * embed_dim]``; ``none`` ->
    ``[*lead, L, embed_dim]``.

    Args:
        input_shape: ``(C, H, W)`` or ``(L, F)``.
        embed_dim: token width (a multiple of ``heads``).
        heads: attention heads.
        layers: transformer layers.
        patch_size: patch side for image input (must divide H and W).
        pool: ``mean``, ``flatten`` or ``none``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        embed_dim: Count = 64,
        heads: Count = 4,
        layers: Count = 1,
        patch_size: Count = 8,
        pool: Literal["mean", "flatten", "none"] = "mean",
    ):
        super().__init__(input_shape)
        if embed_dim % heads:
            raise ConfigError(f"embed_dim ({embed_dim}) must be a multiple of heads ({heads})")
        if len(self.input_shape) == 3:
            c, h, w = self.input_shape
            if h % patch_size or w % patch_size:
                raise ShapeError(f"image sides that patch_size {patch_size} divides")
            tokens = (h // patch_size) * (w // patch_size)
            self.embed = nn.Conv2d(c, embed_dim, patch_size, stride=patch_size)
            self.position = nn.Parameter(torch.randn(tokens, embed_dim) * 0.02)
        elif len(self.input_shape) == 2:
            tokens = self.input_shape[0]
            self.embed = nn.Linear(self.input_shape[1], embed_dim)
            self.position = None
        else:
            raise ShapeError("an image [C, H, W] or an entity set [N, F]")
        self.layers = nn.Sequential(*(TransformerLayer(embed_dim, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(embed_dim)
        self.pool = pool
        shapes = {"mean": (embed_dim,), "flatten": (tokens * embed_dim,), "none": (tokens, embed_dim)}
        self.output_shape = shapes[pool]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, *input_shape] -> [N, L, embed_dim]``: the embedded tokens."""
        if self.position is None:
            return self.embed(x.float())
        return self.embed(image_float(x)).flatten(2).transpose(1, 2) + self.position

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.layers(self.tokens(x)))
        if self.pool == "mean":
            return x.mean(1)
        return x.flatten(1) if self.pool == "flatten" else x
