"""A small vision transformer (Dosovitskiy et al. 2021) for MNIST- and CIFAR-sized images.

The image is cut into ``patch_size``² patches by ``patch_embed``, a Conv2d with
stride = kernel = ``patch_size`` (one ``dim``-vector per patch: 7x7 = 49 tokens for
28x28 inputs and patch 4, 8x8 = 64 for 32x32). With ``pool="cls"`` a learned class
token is put in front of them; a learned position embedding is added to every token.
Then ``depth`` pre-LayerNorm blocks::

    x = x + attn(norm1(x))     # multi-head self-attention, heads of dim // heads
    x = x + mlp(norm2(x))      # fc1 → GELU → fc2, hidden width mlp_ratio · dim

and a final LayerNorm. The class token (``pool="cls"``) or the mean of the patch
tokens (``pool="mean"``) goes to ``head = nn.Linear(dim, num_classes)``.

Every projection is an ``nn.Linear``, so the default prunable parameters
(``prunekit.masks.prunable_parameters``) are ``patch_embed.weight``, each block's
``attn.{q,k,v,out}.weight`` and ``mlp.{fc1,fc2}.weight``, and ``head.weight``; the
LayerNorms, the class token and the position embedding are not. Modules are named
``blocks.{i}.{norm1,attn,norm2,mlp}``. The class token and the position embedding
start from N(0, 0.02²); Linear, Conv and LayerNorm keep PyTorch's defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ConfigError
from prunekit.models._checks import one_of, positive_int
from prunekit.models.registry import register_model

POOLS = ("cls", "mean")


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate ``q``, ``k``, ``v`` and ``out`` projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, T, D) → (B, heads, T, D / heads)
            return t.view(batch, tokens, self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.q(x)), split(self.k(x)), split(self.v(x))
        )
        return self.out(attended.transpose(1, 2).reshape(batch, tokens, dim))


class FeedForward(nn.Module):
    """``fc1 → GELU → fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: attention and MLP, each with a residual connection."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A small ViT; see the module docstring."""

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 28,
        in_channels: int = 1,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 2,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        self.default_input_shape = (in_channels, input_size, input_size)
        self.pool = pool
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        tokens = (input_size // patch_size) ** 2 + (1 if pool == "cls" else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))


@register_model("vit")
def vit(
    num_classes: int = 10,
    input_size: int = 28,
    in_channels: int = 1,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: int = 2,
    pool: str = "cls",
) -> VisionTransformer:
    """Small ViT (dim 64, depth 4, 4 heads, patch 4): 28x28x1 by default, ``input_size=32,
    in_channels=3`` for CIFAR; about 0.14M parameters at the defaults."""
    for option, value in [
        ("input_size", input_size),
        ("in_channels", in_channels),
        ("patch_size", patch_size),
        ("dim", dim),
        ("depth", depth),
        ("heads", heads),
        ("mlp_ratio", mlp_ratio),
    ]:
        positive_int(option, value)
    one_of("pool", pool, POOLS)
    if input_size % patch_size:
        raise ConfigError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
    if dim % heads:
        raise ConfigError(f"dim {dim} is not a multiple of heads {heads}")
    return VisionTransformer(
        num_classes, input_size, in_channels, patch_size, dim, depth, heads, mlp_ratio, pool
    )
