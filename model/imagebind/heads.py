"""The output end of an ImageBind branch: a head pools and projects, a post-processor scales.

Heads read one token of the trunk's output (the cls token; for text the end-of-text token),
LayerNorm it and project it without bias into the shared embedding space. Post-processors scale
the result to unit L2 norm, then (all but vision) multiply by a logit scale: text learns its scale
(initial 1/0.07, clipped at 100), audio 20, depth 5, thermal 10, IMU 5 are fixed buffers. The
module layout (Sequential indices) follows the public code, whose names the checkpoint holds:
`modality_heads.vision.0` (norm), `.2` (projection); `modality_heads.text.proj.0`, `.proj.1`;
`modality_postprocessors.audio.1.log_logit_scale`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEAD_NORM_EPS = 1e-6


class SelectToken(nn.Module):
    """[B, L, D] -> [B, D]: the token at `index` (0: the cls token)."""

    def __init__(self, index: int = 0) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.index]


class SelectEOSAndProject(nn.Module):
    """Text head: the end-of-text token of each row, then `proj` (LayerNorm, linear)."""

    def __init__(self, proj: nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: Tensor, eos_index: Tensor) -> Tensor:
        """x: [B, L, D]; eos_index: [B] position of each row's end-of-text token."""
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eos_index])


class L2Normalize(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=-1, p=2)


class LogitScale(nn.Module):
    """Multiplies by exp(log_logit_scale), clipped at `max_scale`; a parameter only when learnable."""

    def __init__(self, init_scale: float, learnable: bool, max_scale: float = 100.0) -> None:
        super().__init__()
        self.max_scale = max_scale
        log_scale = torch.full((), math.log(init_scale))
        if learnable:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)

    def forward(self, x: Tensor) -> Tensor:
        return torch.clip(self.log_logit_scale.exp(), max=self.max_scale) * x


def cls_head(embed_dim: int, out_dim: int, dropout: float = 0.0) -> nn.Sequential:
    """LayerNorm, cls token, [Dropout (IMU: 0.5)], bias-free projection to the shared space."""
    layers: list[nn.Module] = [nn.LayerNorm(embed_dim, eps=HEAD_NORM_EPS), SelectToken(0)]
    if dropout > 0.0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(embed_dim, out_dim, bias=False))
    return nn.Sequential(*layers)


def text_head(embed_dim: int, out_dim: int) -> SelectEOSAndProject:
    return SelectEOSAndProject(nn.Sequential(
        nn.LayerNorm(embed_dim, eps=HEAD_NORM_EPS), nn.Linear(embed_dim, out_dim, bias=False)))


def normalize_and_scale(init_scale: float, learnable: bool = False) -> nn.Sequential:
    """Unit L2 norm, then a logit scale (index 1: the checkpoint's `.1.log_logit_scale`)."""
    return nn.Sequential(L2Normalize(), LogitScale(init_scale, learnable))
