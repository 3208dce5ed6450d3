"""ImageBind's preprocessors: from a modality's raw tensor to the token sequence its trunk reads.

    vision   [B, 3, H, W] or [B, 3, T, H, W]  a 2-frame video (an image is repeated), 2x14x14 patches
    text     [B, 77] token ids                 CLIP vocabulary; the end-of-text token has the largest id
    audio    [B, 1, 128, 204] mel spectrogram  16x16 patches with stride 10
    depth    [B, 1, 224, 224]                  16x16 patches
    thermal  [B, 1, 224, 224]                  16x16 patches
    imu      [B, 6, 2000]                      windows of 8 samples, all 6 channels in one token

Patch modalities prepend one cls token and add a learned positional embedding; text adds its
positional embedding and hands the trunk a causal mask and the head the end-of-text positions.
Parameter names are those of the public code (`rgbt_stem` for vision, audio and thermal,
`depth_stem` for depth, `pos_embedding_helper.pos_embed`, ...), so that `imagebind_huge.pth` loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.tokenizer import IMAGE_SIZE

TEXT_CONTEXT_LENGTH = 77
TEXT_VOCAB_SIZE = 49408
IMU_CHANNELS = 6
IMU_SAMPLES = 2000


@dataclass
class Tokens:
    """What a preprocessor hands on: the tokens, and what the trunk and the head need besides."""

    tokens: Tensor  # [B, L, D]
    attn_mask: Tensor | None = None  # additive [L, L] for the trunk (text: causal)
    head_kwargs: dict[str, Tensor] = field(default_factory=dict)  # text: {"eos_index": [B]}


def conv_output_shape(input_shape: Sequence[int], kernel: Sequence[int],
                      stride: Sequence[int]) -> tuple[int, ...]:
    """Output size per axis of an unpadded convolution: floor((n - k) / s) + 1.

    The public code finds the patch layout by running its stem on a dummy tensor; arithmetic gives
    the same numbers and lets the model be built on the meta device.
    """
    return tuple((n - k) // s + 1 for n, k, s in zip(input_shape, kernel, stride, strict=True))


class PadIm2Video(nn.Module):
    """Turns an image [B, C, H, W] into a video [B, C, T, H, W] whose single frame is repeated."""

    def __init__(self, ntimes: int) -> None:
        super().__init__()
        self.ntimes = ntimes

    def frames_out(self, frames_in: int) -> int:
        return self.ntimes if frames_in == 1 else frames_in

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        elif x.ndim != 5:
            raise ValueError(f"vision input must be [B, 3, H, W] or [B, 3, T, H, W], got {tuple(x.shape)}")
        if x.shape[2] == 1:
            x = x.repeat(1, 1, self.ntimes, 1, 1)
        return x


class PatchEmbed(nn.Module):
    """`proj` (a convolution, or a linear layer for IMU windows), then an optional LayerNorm.

    Returns tokens [B, N, D]. The input is cast to the projection's dtype, so a model held in bf16
    takes float32 pixels; under autocast (float32 weights) nothing is cast here.
    """

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x.to(next(self.proj.parameters()).dtype))
        if x.ndim > 3:
            x = x.flatten(2).transpose(1, 2)  # [B, D, (T,) H, W] -> [B, (T)HW, D]
        return x if self.norm_layer is None else self.norm_layer(x)


def resize_square_grid(positions: Tensor, num_tokens: int) -> Tensor:
    """Bicubic resize of [1, N, D] positions laid out on a sqrt(N) x sqrt(N) grid to num_tokens.

    As the public code: the scale factor (not the output size) is given to `F.interpolate`, and the
    resize runs in float32 (bicubic has no bf16 kernel everywhere).
    """
    count, dim = positions.shape[1], positions.shape[2]
    side = int(math.sqrt(count))
    grid = positions.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, side, side]
    grid = F.interpolate(grid.float(), scale_factor=math.sqrt(num_tokens / count), mode="bicubic")
    resized = grid.to(positions.dtype).permute(0, 2, 3, 1).reshape(1, -1, dim)
    if resized.shape[1] != num_tokens:
        raise ValueError(f"cannot resize a {side}x{side} positional grid to {num_tokens} patches: "
                         "the patch grid of the input must be square")
    return resized


class PositionEmbedding(nn.Module):
    """Learned positions for cls tokens + patches, resized when an input has another patch count.

    Resizing follows the public code and covers what it covers: layouts [T, H, W] with H == W
    (vision). A model built for one frame pair resizes the 2-D grid; one built for more frames
    takes the first frame's grid for an image input. Other cases are errors (the public code
    fails on them too).
    """

    def __init__(self, patches_layout: tuple[int, ...], num_cls_tokens: int, embed_dim: int) -> None:
        super().__init__()
        self.patches_layout = patches_layout
        self.num_cls_tokens = num_cls_tokens
        self.pos_embed = nn.Parameter(torch.empty(1, num_cls_tokens + math.prod(patches_layout), embed_dim))

    def forward(self, num_patches: int, input_ndim: int) -> Tensor:
        """Positions [1, cls + num_patches, D] for an input with `input_ndim` dims (before padding)."""
        stored = self.pos_embed.shape[1] - self.num_cls_tokens
        if num_patches == stored:
            return self.pos_embed
        layout = self.patches_layout
        if len(layout) != 3 or layout[1] != layout[2]:
            raise ValueError(f"input gives {num_patches} patches, the positional embedding holds "
                             f"{stored} (patch layout {layout}); only the vision layout can be "
                             "resized: feed this modality at the size the model was built for")
        cls_positions = self.pos_embed[:, :self.num_cls_tokens]
        patch_positions = self.pos_embed[:, self.num_cls_tokens:]
        if layout[0] > 1:
            if input_ndim != 4:
                raise ValueError(f"input gives {num_patches} patches, the positional embedding "
                                 f"holds {stored} over {layout[0]} frames: only an image input "
                                 "[B, 3, H, W] can be resized there")
            # [1, T*H*W, D] -> [1, T, H*W, D]: keep the first frame's grid
            patch_positions = patch_positions.view(1, layout[0], layout[1] * layout[2], -1)[:, 0]
        if patch_positions.shape[1] != num_patches:
            patch_positions = resize_square_grid(patch_positions, num_patches)
        return torch.cat((cls_positions, patch_positions), dim=1)


class PatchPreprocessor(nn.Module):
    """Patch stem, one cls token in front, learned positions added: vision, audio, depth, thermal.

    `stem_name` is the stem's name in the checkpoint: `rgbt_stem`, or `depth_stem` for depth.
    `input_shape` is one sample's shape the model is built for (vision: [3, frames, 224, 224]).
    """

    def __init__(self, stem_name: str, stem: PatchEmbed, input_shape: Sequence[int],
                 kernel: Sequence[int], stride: Sequence[int], embed_dim: int,
                 num_cls_tokens: int = 1) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.empty(1, num_cls_tokens, embed_dim))
        self.stem_name = stem_name
        self.add_module(stem_name, stem)
        layout = conv_output_shape(input_shape[1:], kernel, stride)
        self.pos_embedding_helper = PositionEmbedding(layout, num_cls_tokens, embed_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The public "openclip" initialisation: standard normal scaled by 1/sqrt(width)."""
        scale = self.cls_token.shape[-1] ** -0.5
        for param in (self.cls_token, self.pos_embedding_helper.pos_embed):
            nn.init.normal_(param)
            param.mul_(scale)

    def forward(self, x: Tensor) -> Tokens:
        patches = getattr(self, self.stem_name)(x)  # [B, N, D]
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat((cls_tokens, patches), dim=1)
        return Tokens(tokens + self.pos_embedding_helper(patches.shape[1], x.ndim))


class TextPreprocessor(nn.Module):
    """Token embedding + learned positions; a causal mask for the trunk; end-of-text positions."""

    def __init__(self, embed_dim: int, vocab_size: int = TEXT_VOCAB_SIZE,
                 context_length: int = TEXT_CONTEXT_LENGTH) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, embed_dim))
        # Additive causal mask, a buffer in the checkpoint: -inf above the diagonal. On the meta
        # device there is nothing to fill (and its triu_ would import torch._dynamo: seconds).
        self.register_buffer("mask", torch.empty(context_length, context_length))
        if not self.mask.is_meta:
            with torch.no_grad():
                self.mask.fill_(float("-inf")).triu_(1)
        self.token_embedding = nn.Embedding(vocab_size, embed_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)

    def forward(self, text: Tensor) -> Tokens:
        """text: [B, 77] ids, each row ending with the end-of-text id (the largest in the vocabulary)."""
        context_length = self.pos_embed.shape[1]
        if text.ndim != 2 or text.shape[1] != context_length:
            raise ValueError(f"text input must be token ids [B, {context_length}] (pad with 0), "
                             f"got {tuple(text.shape)}")
        tokens = self.token_embedding(text) + self.pos_embed
        # The head reads the end-of-text token: it has the largest id, so argmax finds it.
        eos_index = text.argmax(dim=-1)
        return Tokens(tokens, attn_mask=self.mask, head_kwargs={"eos_index": eos_index})


class IMUPreprocessor(nn.Module):
    """Cuts [B, 6, 2000] into windows of `kernel_size` samples, one token per window (all channels)."""

    def __init__(self, stem: PatchEmbed, embed_dim: int, kernel_size: int,
                 num_samples: int = IMU_SAMPLES, num_cls_tokens: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.pos_embed = nn.Parameter(torch.empty(1, num_samples // kernel_size + num_cls_tokens, embed_dim))
        self.cls_token = nn.Parameter(torch.empty(1, num_cls_tokens, embed_dim))
        self.imu_stem = stem
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.pos_embed, std=0.01)
        nn.init.normal_(self.cls_token)
        self.cls_token.mul_(self.cls_token.shape[-1] ** -0.5)

    def forward(self, imu: Tensor) -> Tokens:
        windows = imu.unfold(-1, self.kernel_size, self.kernel_size)  # [B, C, W, k]
        # [B, C, W, k] -> [B, W, C*k]: one token per window, channel-major inside it
        windows = windows.permute(0, 2, 1, 3).flatten(2)
        patches = self.imu_stem(windows)
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        return Tokens(torch.cat((cls_tokens, patches), dim=1) + self.pos_embed)


def vision_preprocessor(embed_dim: int, video_frames: int, kernel_size: Sequence[int]) -> PatchPreprocessor:
    """Images and videos: a bias-free Conv3d over (time, height, width) after frame repetition."""
    pad = PadIm2Video(ntimes=2)
    conv = nn.Conv3d(3, embed_dim, kernel_size=tuple(kernel_size), stride=tuple(kernel_size), bias=False)
    # Index 1 inside a Sequential: the checkpoint's key is rgbt_stem.proj.1.weight.
    stem = PatchEmbed(nn.Sequential(pad, conv))
    input_shape = (3, pad.frames_out(video_frames), IMAGE_SIZE, IMAGE_SIZE)
    return PatchPreprocessor("rgbt_stem", stem, input_shape, kernel_size, kernel_size, embed_dim)


def single_channel_preprocessor(stem_name: str, embed_dim: int, input_hw: tuple[int, int],
                                kernel_size: int, stride: int) -> PatchPreprocessor:
    """Audio (mel spectrogram), depth and thermal: a bias-free Conv2d over one channel, LayerNorm."""
    conv = nn.Conv2d(1, embed_dim, kernel_size=kernel_size, stride=stride, bias=False)
    stem = PatchEmbed(conv, norm_layer=nn.LayerNorm(embed_dim))
    return PatchPreprocessor(stem_name, stem, (1, *input_hw), (kernel_size,) * 2, (stride,) * 2, embed_dim)


def imu_preprocessor(embed_dim: int, kernel_size: int) -> IMUPreprocessor:
    """IMU: a bias-free linear layer over each window of 6 x kernel_size samples, LayerNorm."""
    linear = nn.Linear(IMU_CHANNELS * kernel_size, embed_dim, bias=False)
    return IMUPreprocessor(PatchEmbed(linear, norm_layer=nn.LayerNorm(embed_dim)), embed_dim, kernel_size)
