"""ImageBind: one frozen encoder per modality, all into one shared, normalised embedding space.

A modality is four parts registered under its name, each in a ModuleDict named as in the
public code and in `imagebind_huge.pth`:

    modality_preprocessors[m]   raw tensor -> Tokens (tokens [B, L, D], trunk mask, head inputs)
    modality_trunks[m]          transformer blocks                  (trunk.py)
    modality_heads[m]           one token -> LayerNorm -> projection (heads.py)
    modality_postprocessors[m]  unit L2 norm (x logit scale)         (heads.py)

`forward({m: x})` runs only the modalities asked for, and a model may hold only some of them
(`keep_modalities` drops the rest to save memory). Inputs with 5 or more dims carry a clips axis,
[B, S, ...]: each clip is embedded and the S embeddings are averaged, as the public code does.

Adding a modality is adding entries with `add_modality`, not editing `forward`. The 3D point
branch of `imagebind_w3D.pth` (tests/contracts/imagebind_huge_point_extra.json; `point_branch=True`)
is the one exception, as in that file: its trunk (points.py) is the top-level `point_trunk`, it
has no preprocessor, and its head `modality_heads.point` (LayerNorm(512), Dropout, Linear) reads
the trunk's output directly; its post-processor has a fixed scale 1.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor, nn

from model.imagebind.heads import HEAD_NORM_EPS, L2Normalize, cls_head, normalize_and_scale, text_head
from model.imagebind.points import PROJECTION, PointTrunk
from model.imagebind.preprocessors import (
    IMAGE_SIZE, TextPreprocessor, Tokens, imu_preprocessor, single_channel_preprocessor, vision_preprocessor,
)
from model.imagebind.trunk import Trunk


class ModalityType:
    """The modality names: keys of `forward`'s input and output dicts and of the checkpoint."""

    VISION = "vision"
    TEXT = "text"
    AUDIO = "audio"
    THERMAL = "thermal"
    DEPTH = "depth"
    IMU = "imu"
    POINT = "point"


# The public code's IMU preprocessor always cuts windows of 8 samples, whatever imu_kernel_size says.
_IMU_WINDOW = 8

# The Huge preset (imagebind_huge.pth); every other hyper-parameter keeps ImageBindModel's default.
IMAGEBIND_HUGE_ARGS: dict[str, int | float] = dict(
    vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16,
    text_embed_dim=1024, text_num_blocks=24, text_num_heads=16,
    out_embed_dim=1024, audio_drop_path=0.1, imu_drop_path=0.7,
)


class ImageBindModel(nn.Module):
    """The six-modality encoder; keyword hyper-parameters, names and defaults as the public code.

    `imu_kernel_size` must stay 8: the public code ignores it and always uses windows of 8.
    """

    def __init__(
        self,
        video_frames: int = 2,
        kernel_size: Sequence[int] = (2, 14, 14),
        audio_kernel_size: int = 16,
        audio_stride: int = 10,
        out_embed_dim: int = 768,
        vision_embed_dim: int = 1024,
        vision_num_blocks: int = 24,
        vision_num_heads: int = 16,
        audio_embed_dim: int = 768,
        audio_num_blocks: int = 12,
        audio_num_heads: int = 12,
        audio_num_mel_bins: int = 128,
        audio_target_len: int = 204,
        audio_drop_path: float = 0.1,
        text_embed_dim: int = 768,
        text_num_blocks: int = 12,
        text_num_heads: int = 12,
        depth_embed_dim: int = 384,
        depth_kernel_size: int = 16,
        depth_num_blocks: int = 12,
        depth_num_heads: int = 8,
        depth_drop_path: float = 0.0,
        thermal_embed_dim: int = 768,
        thermal_kernel_size: int = 16,
        thermal_num_blocks: int = 12,
        thermal_num_heads: int = 12,
        thermal_drop_path: float = 0.0,
        imu_embed_dim: int = 512,
        imu_kernel_size: int = 8,
        imu_num_blocks: int = 6,
        imu_num_heads: int = 8,
        imu_drop_path: float = 0.7,
        point_branch: bool = False,
        point_embed_dim: int = 384,
        point_num_blocks: int = 12,
        point_num_heads: int = 6,
    ) -> None:
        super().__init__()
        if imu_kernel_size != _IMU_WINDOW:
            raise ValueError(f"imu_kernel_size={imu_kernel_size}: the public ImageBind code always "
                             f"cuts IMU windows of {_IMU_WINDOW} samples; leave it at {_IMU_WINDOW}")
        for name, dim, heads in [("vision", vision_embed_dim, vision_num_heads),
                                 ("text", text_embed_dim, text_num_heads),
                                 ("audio", audio_embed_dim, audio_num_heads),
                                 ("depth", depth_embed_dim, depth_num_heads),
                                 ("thermal", thermal_embed_dim, thermal_num_heads),
                                 ("imu", imu_embed_dim, imu_num_heads)]:
            if dim % heads:
                raise ValueError(f"{name}_embed_dim={dim} is not divisible by {name}_num_heads={heads}")

        self.out_embed_dim = out_embed_dim
        self.modality_preprocessors = nn.ModuleDict()
        self.modality_trunks = nn.ModuleDict()
        self.modality_heads = nn.ModuleDict()
        self.modality_postprocessors = nn.ModuleDict()

        self.add_modality(
            ModalityType.VISION,
            vision_preprocessor(vision_embed_dim, video_frames, kernel_size),
            Trunk(vision_embed_dim, vision_num_blocks, vision_num_heads,
                  pre_transformer_ln=True, add_bias_kv=False, drop_path=0.0),
            cls_head(vision_embed_dim, out_embed_dim),
            L2Normalize(),
        )
        self.add_modality(
            ModalityType.TEXT,
            TextPreprocessor(text_embed_dim),
            Trunk(text_embed_dim, text_num_blocks, text_num_heads,
                  pre_transformer_ln=False, add_bias_kv=False, drop_path=0.0),
            text_head(text_embed_dim, out_embed_dim),
            normalize_and_scale(1 / 0.07, learnable=True),
        )
        self.add_modality(
            ModalityType.AUDIO,
            single_channel_preprocessor("rgbt_stem", audio_embed_dim, (audio_num_mel_bins, audio_target_len),
                                        audio_kernel_size, audio_stride),
            Trunk(audio_embed_dim, audio_num_blocks, audio_num_heads,
                  pre_transformer_ln=False, add_bias_kv=True, drop_path=audio_drop_path),
            cls_head(audio_embed_dim, out_embed_dim),
            normalize_and_scale(20.0),
        )
        self.add_modality(
            ModalityType.DEPTH,
            single_channel_preprocessor("depth_stem", depth_embed_dim, (IMAGE_SIZE, IMAGE_SIZE),
                                        depth_kernel_size, depth_kernel_size),
            Trunk(depth_embed_dim, depth_num_blocks, depth_num_heads,
                  pre_transformer_ln=False, add_bias_kv=True, drop_path=depth_drop_path),
            cls_head(depth_embed_dim, out_embed_dim),
            normalize_and_scale(5.0),
        )
        self.add_modality(
            ModalityType.THERMAL,
            single_channel_preprocessor("rgbt_stem", thermal_embed_dim, (IMAGE_SIZE, IMAGE_SIZE),
                                        thermal_kernel_size, thermal_kernel_size),
            Trunk(thermal_embed_dim, thermal_num_blocks, thermal_num_heads,
                  pre_transformer_ln=False, add_bias_kv=True, drop_path=thermal_drop_path),
            cls_head(thermal_embed_dim, out_embed_dim),
            normalize_and_scale(10.0),
        )
        self.add_modality(
            ModalityType.IMU,
            imu_preprocessor(imu_embed_dim, _IMU_WINDOW),
            Trunk(imu_embed_dim, imu_num_blocks, imu_num_heads,
                  pre_transformer_ln=False, add_bias_kv=True, drop_path=imu_drop_path),
            cls_head(imu_embed_dim, out_embed_dim, dropout=0.5),
            normalize_and_scale(5.0),
        )
        if point_branch:
            self.point_trunk = PointTrunk(width=point_embed_dim, depth=point_num_blocks, heads=point_num_heads)
            self.modality_heads[ModalityType.POINT] = nn.Sequential(
                nn.LayerNorm(PROJECTION, eps=HEAD_NORM_EPS), nn.Dropout(0.5),
                nn.Linear(PROJECTION, out_embed_dim, bias=False))
            self.modality_postprocessors[ModalityType.POINT] = normalize_and_scale(1.0)

    def add_modality(self, name: str, preprocessor: nn.Module, trunk: nn.Module, head: nn.Module,
                     postprocessor: nn.Module) -> None:
        """Registers a branch. Contract: preprocessor(x) -> Tokens; trunk(tokens, attn_mask) -> h;
        head(h, **tokens.head_kwargs) -> [B, out_embed_dim]; postprocessor keeps the shape."""
        self.modality_preprocessors[name] = preprocessor
        self.modality_trunks[name] = trunk
        self.modality_heads[name] = head
        self.modality_postprocessors[name] = postprocessor

    def _parts(self) -> tuple[nn.ModuleDict, ...]:
        return (self.modality_preprocessors, self.modality_trunks, self.modality_heads,
                self.modality_postprocessors)

    @property
    def modalities(self) -> list[str]:
        """The modalities this model can embed: those whose four parts are all present."""
        names = [m for m in self.modality_trunks if all(m in part for part in self._parts())]
        if self._has_point_branch():
            names.append(ModalityType.POINT)
        return names

    def _has_point_branch(self) -> bool:
        return (getattr(self, "point_trunk", None) is not None and ModalityType.POINT in self.modality_heads
                and ModalityType.POINT in self.modality_postprocessors)

    def keep_modalities(self, names: Sequence[str]) -> "ImageBindModel":
        """Drops every branch not named (its weights are freed); returns self.

        Load the full checkpoint first: afterwards the state dict holds only the kept branches.
        """
        if isinstance(names, str):
            names = [names]
        unknown = sorted(set(names) - set(self.modalities))
        if unknown:
            raise KeyError(f"keep_modalities: unknown {unknown}; this model holds {self.modalities}")
        for part in self._parts():
            for name in [m for m in part if m not in names]:
                del part[name]
        if ModalityType.POINT not in names and hasattr(self, "point_trunk"):
            del self.point_trunk
        return self

    def forward(self, inputs: Mapping[str, Tensor | None]) -> dict[str, Tensor]:
        """{modality: tensor} -> {modality: embedding [B, out_embed_dim]}; None inputs are skipped."""
        return {m: self.embed(m, x) for m, x in inputs.items() if x is not None}

    def embed(self, modality: str, x: Tensor) -> Tensor:
        """One modality's embedding [B, out_embed_dim]; a clips axis (ndim >= 5) is averaged over."""
        if modality not in self.modalities:
            raise KeyError(f"ImageBindModel has no {modality!r} branch: it holds {self.modalities} "
                           "(keep_modalities or a deleted part removed the others)")
        if modality == ModalityType.POINT:  # [B, N, 3]: the trunk takes the points themselves
            return self.modality_postprocessors[modality](self.modality_heads[modality](self.point_trunk(x)))
        has_clips = x.ndim >= 5  # audio [B, S, 1, F, T], vision [B, S, 3, (T,) H, W]
        if has_clips:
            batch, clips = x.shape[:2]
            x = x.flatten(0, 1)  # [B, S, ...] -> [B*S, ...]
        prepared: Tokens = self.modality_preprocessors[modality](x)
        hidden = self.modality_trunks[modality](prepared.tokens, prepared.attn_mask)
        out = self.modality_heads[modality](hidden, **prepared.head_kwargs)
        out = self.modality_postprocessors[modality](out)
        if has_clips:
            out = out.reshape(batch, clips, -1).mean(dim=1)
        return out


def imagebind_huge() -> ImageBindModel:
    """ImageBind-Huge with random weights (load `imagebind_huge.pth` separately, strict=True)."""
    return ImageBindModel(**IMAGEBIND_HUGE_ARGS)
