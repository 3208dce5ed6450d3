"""ImageBind's 3D point-cloud branch (Point-Bind): Point-BERT's encoder, as the published code runs it.

    point cloud [B, N, 3]
      -> 512 centres by farthest-point sampling (the first one drawn at random, as published)
      -> each centre's 32 nearest points, relative to it
      -> a mini-PointNet per group (1x1 convolutions, batch norm, max pooling twice) -> 256 -> 384
      -> a cls token and the groups, plus positions (an MLP of the centres), through 12 pre-norm
         transformer blocks of width 384 (6 heads, exact GELU, LayerNorm eps 1e-5, no qkv bias),
         the positions added again before every block
      -> LayerNorm; the cls token beside the max over the groups [B, 768] -> x pc_projection [B, 512]

The head and post-processor (in model.py) are ImageBind's usual ones: LayerNorm(512), dropout,
a bias-free projection to the shared space, unit norm times a fixed scale 1. The names match
`imagebind_w3D.pth` (tests/contracts/imagebind_huge_point_extra.json): this module is that file's
`point_trunk`. Sampling and grouping are plain PyTorch (the published code's CUDA extension is
only imported there, never used on this path), so the branch runs on any device.

The published sampler draws its start point with `torch.randint` from the global generator, so
one cloud's embedding changes a little from call to call; seed torch (`torch.manual_seed`) for
repeatable embeddings, or pass `generator`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WIDTH, DEPTH, HEADS = 384, 12, 6
GROUPS, GROUP_SIZE = 512, 32
GROUP_FEATURES = 256
PROJECTION = 512
BLOCK_NORM_EPS = 1e-5  # nn.LayerNorm's default, which the published blocks use


def farthest_point_indices(points: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:
    """[B, count] indices of `count` points, each the farthest from those already chosen.

    The first is drawn at random on the CPU (the published code's call, so a seeded global
    generator gives the same choice); distances are squared Euclidean, ties to the lowest index.
    """
    batch, size, _ = points.shape
    if size < count:
        raise ValueError(f"a point cloud of {size} points has fewer than the {count} centres the encoder samples")
    chosen = torch.zeros(batch, count, dtype=torch.long, device=points.device)
    nearest = torch.full((batch, size), 1e10, device=points.device)
    current = torch.randint(0, size, (batch,), dtype=torch.long, generator=generator).to(points.device)
    rows = torch.arange(batch, device=points.device)
    for step in range(count):
        chosen[:, step] = current
        centre = points[rows, current].view(batch, 1, 3)
        nearest = torch.minimum(nearest, ((points - centre) ** 2).sum(-1))
        current = nearest.max(dim=-1).indices
    return chosen


def nearest_neighbour_indices(points: Tensor, centres: Tensor, k: int) -> Tensor:
    """[B, G, k] indices of the k points nearest each centre (squared distance as |c|^2 + |p|^2 - 2 c.p)."""
    distances = -2 * centres @ points.transpose(1, 2)
    distances = distances + (centres ** 2).sum(-1, keepdim=True) + (points ** 2).sum(-1).unsqueeze(1)
    return distances.topk(k, dim=-1, largest=False).indices


def _gather(points: Tensor, indices: Tensor) -> Tensor:
    """points [B, N, C] at indices [B, ...] -> [B, ..., C]."""
    flat = indices.reshape(indices.shape[0], -1)
    picked = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return picked.reshape(*indices.shape, points.shape[-1])


class GroupEncoder(nn.Module):
    """Mini-PointNet: [B, G, n, 3] point groups -> [B, G, out] (per-point convolutions, max pooling)."""

    def __init__(self, out_features: int = GROUP_FEATURES) -> None:
        super().__init__()
        self.out_features = out_features
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Conv1d(512, out_features, 1))

    def forward(self, groups: Tensor) -> Tensor:
        batch, count, size, _ = groups.shape
        features = self.first_conv(groups.reshape(batch * count, size, 3).transpose(2, 1))  # [BG, 256, n]
        pooled = features.max(dim=2, keepdim=True).values
        features = self.second_conv(torch.cat([pooled.expand(-1, -1, size), features], dim=1))
        return features.max(dim=2).values.reshape(batch, count, self.out_features)


class PointAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class PointMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class PointBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = PointAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = PointMlp(dim, 4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PointBlocks(nn.Module):
    """The transformer: the positions are added to the tokens before every block."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(PointBlock(dim, heads) for _ in range(depth))

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x + positions)
        return x


class PointEncoder(nn.Module):
    """Point-BERT's encoder: [B, N, 3] -> [B, 2 x width] (the cls token beside the groups' max)."""

    def __init__(self, width: int = WIDTH, depth: int = DEPTH, heads: int = HEADS, groups: int = GROUPS,
                 group_size: int = GROUP_SIZE) -> None:
        super().__init__()
        self.groups, self.group_size = groups, group_size
        self.encoder = GroupEncoder(GROUP_FEATURES)
        self.reduce_dim = nn.Linear(GROUP_FEATURES, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, width))
        self.blocks = PointBlocks(width, depth, heads)
        self.norm = nn.LayerNorm(width, eps=BLOCK_NORM_EPS)

    def forward(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        centre_indices = farthest_point_indices(points, self.groups, generator)
        centres = _gather(points, centre_indices)  # [B, G, 3]
        neighbours = _gather(points, nearest_neighbour_indices(points, centres, self.group_size))  # [B, G, k, 3]
        tokens = self.reduce_dim(self.encoder(neighbours - centres.unsqueeze(2)))
        batch = points.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        positions = torch.cat([self.cls_pos.expand(batch, -1, -1), self.pos_embed(centres)], dim=1)
        x = self.norm(self.blocks(x, positions))
        return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1)


class PointTrunk(nn.Module):
    """`point_trunk` of the 3D ImageBind file: the encoder, then its projection to 512."""

    def __init__(self, **encoder_args) -> None:
        super().__init__()
        self.point_encoder = PointEncoder(**encoder_args)
        width = self.point_encoder.reduce_dim.out_features
        self.pc_projection = nn.Parameter(torch.empty(2 * width, PROJECTION))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.pc_projection, std=PROJECTION ** -0.5)
        nn.init.normal_(self.point_encoder.cls_pos)

    def forward(self, points: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.point_encoder(points, generator) @ self.pc_projection
