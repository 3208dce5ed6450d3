"""The transformer trunk of an ImageBind modality: pre-norm blocks of self-attention and MLP.

Every modality runs the same trunk with its own width, depth and head count. Parameter names are
fixed by `imagebind_huge.pth` (the public code builds its attention from `nn.MultiheadAttention`):

    pre_transformer_layer.0.{weight,bias}                  vision only: a LayerNorm before block 0
    blocks.N.attn.{in_proj_weight,in_proj_bias}            packed q, k, v projection [3D, D]
    blocks.N.attn.{bias_k,bias_v}                          audio, depth, thermal, IMU: [1, 1, D]
    blocks.N.attn.out_proj.{weight,bias}
    blocks.N.norm_1, blocks.N.mlp.fc1, blocks.N.mlp.fc2, blocks.N.norm_2

Tokens run batch-first, [B, L, D]; the public code transposes to [L, B, D] for
`nn.MultiheadAttention`, which changes no number, only where drop path draws its mask (see DropPath).
Attention goes through `F.scaled_dot_product_attention`, which the public module calls too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Every LayerNorm inside the trunk (pre-transformer, norm_1, norm_2) uses this eps, as the public code.
TRUNK_NORM_EPS = 1e-6


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameters and numerics.

    `add_bias_kv` appends one learned key and value (`bias_k`, `bias_v`, not projected) that every
    query may attend to, as `nn.MultiheadAttention(add_bias_kv=True)` does.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """`nn.MultiheadAttention`'s initialisation (out_proj is re-initialised by the trunk)."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x: [B, L, D]; attn_mask: additive [L, L] or None. Returns [B, L, D]."""
        batch, _, dim = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:
            # Cast to the projection's dtype: under autocast q, k, v are bf16 while the bias is not.
            k = torch.cat([k, self.bias_k.to(k.dtype).expand(batch, 1, dim)], dim=1)
            v = torch.cat([v, self.bias_v.to(v.dtype).expand(batch, 1, dim)], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))  # the extra key is visible to every query
        # [B, L, D] -> [B, heads, L, head_dim]
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)  # SDPA wants a float mask in the query's dtype
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # [B, heads, L, hd] -> [B, L, D]


class DropPath(nn.Module):
    """Stochastic depth, drawn the way the public trunk draws it.

    The public trunk holds tokens as [L, B, D] and timm's DropPath draws one keep/drop per entry
    of the first axis: per token position, shared by the whole batch (not per sample, as in most
    ViTs). We hold [B, L, D] and draw per token position too, with the same number of draws, so a
    training step under the same seed drops the same tokens. Identity in eval mode.
    """

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty(1, x.shape[1], 1).bernoulli_(keep_prob)
        if keep_prob > 0.0:
            mask.div_(keep_prob)
        return x * mask


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm_1(x)), then x + mlp(norm_2(x))."""

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool, drop_path: float,
                 mlp_ratio: int = 4) -> None:
        super().__init__()
        self.attn = SelfAttention(dim, num_heads, add_bias_kv)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm_1 = nn.LayerNorm(dim, eps=TRUNK_NORM_EPS)
        self.mlp = Mlp(dim, mlp_ratio * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=TRUNK_NORM_EPS)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm_1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


def drop_path_rates(max_rate: float, num_blocks: int) -> list[float]:
    """Linearly rising drop-path rates, 0 at the first block and `max_rate` at the last.

    Computed as the public code does (float32 `torch.linspace`), on the CPU explicitly so that
    building under `torch.device("meta")` still gets numbers.
    """
    return torch.linspace(0.0, max_rate, num_blocks, device="cpu").tolist()


class Trunk(nn.Module):
    """An optional pre-transformer LayerNorm (vision only), then `num_blocks` blocks."""

    def __init__(self, embed_dim: int, num_blocks: int, num_heads: int, pre_transformer_ln: bool,
                 add_bias_kv: bool, drop_path: float) -> None:
        super().__init__()
        # Index 0 inside a Sequential: the checkpoint's key is pre_transformer_layer.0.weight.
        self.pre_transformer_layer = (
            nn.Sequential(nn.LayerNorm(embed_dim, eps=TRUNK_NORM_EPS)) if pre_transformer_ln
            else nn.Identity()
        )
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, add_bias_kv, rate)
            for rate in drop_path_rates(drop_path, num_blocks)
        )
        self.apply(_init_weights)

    def forward(self, tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """tokens: [B, L, D]; attn_mask: additive [L, L] (text: causal) or None. Returns [B, L, D]."""
        x = self.pre_transformer_layer(tokens)
        for block in self.blocks:
            x = block(x, attn_mask)
        return x


@torch.no_grad()
def _init_weights(module: nn.Module) -> None:
    """The public trunk's "jax" initialisation: xavier-uniform linears, zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
