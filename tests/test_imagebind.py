"""ImageBind encoder: checkpoint contract, shapes, normalisation, clips, partial models, dtypes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from model.imagebind import ImageBindModel, ModalityType, imagebind_huge
from model.imagebind.preprocessors import conv_output_shape
from support import CONTRACTS_DIR

TINY = dict(out_embed_dim=8, vision_embed_dim=16, vision_num_blocks=1, vision_num_heads=2,
            text_embed_dim=16, text_num_blocks=1, text_num_heads=2,
            audio_embed_dim=16, audio_num_blocks=1, audio_num_heads=2,
            depth_embed_dim=16, depth_num_blocks=1, depth_num_heads=2,
            thermal_embed_dim=16, thermal_num_blocks=1, thermal_num_heads=2,
            imu_embed_dim=16, imu_num_blocks=1, imu_num_heads=2)

# The logit scale each modality's unit-norm embedding is multiplied by (text: its initial value).
SCALES = {"vision": 1.0, "text": 1 / 0.07, "audio": 20.0, "depth": 5.0, "thermal": 10.0, "imu": 5.0}
EOT = 49407


def contract_shapes(name: str) -> dict[str, list[int]]:
    return json.loads((CONTRACTS_DIR / name).read_text())["shapes"]


def text_ids(batch: int, generator: torch.Generator) -> torch.Tensor:
    ids = torch.randint(1, EOT, (batch, 77), generator=generator)
    for row in range(batch):
        end = 3 + 7 * row
        ids[row, end], ids[row, end + 1:] = EOT, 0
    return ids


def sample_inputs(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "vision": torch.randn(batch, 3, 224, 224, generator=gen),
        "text": text_ids(batch, gen),
        "audio": torch.randn(batch, 1, 128, 204, generator=gen),
        "depth": torch.randn(batch, 1, 224, 224, generator=gen),
        "thermal": torch.randn(batch, 1, 224, 224, generator=gen),
        "imu": torch.randn(batch, 6, 2000, generator=gen),
    }


@pytest.fixture(scope="module")
def tiny() -> ImageBindModel:
    torch.manual_seed(0)
    return ImageBindModel(**TINY).eval()


def test_huge_on_meta_device_matches_checkpoint_contract():
    with torch.device("meta"):
        model = imagebind_huge()
    shapes = {key: list(t.shape) for key, t in model.state_dict().items()}
    expected = contract_shapes("imagebind_huge.json")
    assert len(shapes) == 1311
    assert shapes == expected
    assert model.out_embed_dim == 1024
    assert all(t.is_meta for t in model.state_dict().values())


def test_huge_shaped_state_dict_loads_strict_and_wrong_shape_fails():
    shapes = contract_shapes("imagebind_huge.json")
    with torch.device("meta"):
        model = imagebind_huge()
        state = {key: torch.empty(shape) for key, shape in shapes.items()}
    assert not model.load_state_dict(state, strict=True, assign=True).missing_keys
    state["modality_heads.vision.2.weight"] = torch.empty(1024, 1024, device="meta")
    with pytest.raises(RuntimeError, match="modality_heads.vision.2.weight"):
        model.load_state_dict(state, strict=True, assign=True)


def test_point_branch_keys_are_not_built():
    """imagebind_w3D.pth's point branch is left out; its keys stay outside the model."""
    with torch.device("meta"):
        keys = set(imagebind_huge().state_dict())
    assert not keys & set(contract_shapes("imagebind_huge_point_extra.json"))


def test_modality_names():
    assert [ModalityType.VISION, ModalityType.TEXT, ModalityType.AUDIO, ModalityType.DEPTH,
            ModalityType.THERMAL, ModalityType.IMU] == list(SCALES)


@pytest.mark.parametrize("modality", list(SCALES))
def test_output_shape_and_norm_is_logit_scale(tiny, modality):
    x = sample_inputs()[modality]
    with torch.no_grad():
        out = tiny({modality: x})
    assert list(out) == [modality]
    assert out[modality].shape == (2, TINY["out_embed_dim"])
    torch.testing.assert_close(out[modality].norm(dim=-1), torch.full((2,), SCALES[modality]))


def test_text_logit_scale_is_learnable_and_clipped_at_100():
    torch.manual_seed(0)
    model = ImageBindModel(**TINY).eval()
    scale = model.modality_postprocessors["text"][1].log_logit_scale
    assert isinstance(scale, nn.Parameter)
    with torch.no_grad():
        scale.fill_(math.log(500.0))
        out = model({"text": sample_inputs()["text"]})["text"]
    torch.testing.assert_close(out.norm(dim=-1), torch.full((2,), 100.0))
    fixed = [m for m in SCALES if m not in ("vision", "text")]
    assert all(not isinstance(model.modality_postprocessors[m][1].log_logit_scale, nn.Parameter)
               for m in fixed)


def test_text_head_reads_the_end_of_text_token(tiny):
    """Changing a token after the end-of-text token changes nothing (causal mask + EOS pooling)."""
    ids = sample_inputs()["text"]
    changed = ids.clone()
    changed[:, -1] = 7  # after every row's end-of-text token (positions 3 and 10)
    before_eos = ids.clone()
    before_eos[:, 1] = 5
    with torch.no_grad():
        base, same, other = (tiny({"text": t})["text"] for t in (ids, changed, before_eos))
    torch.testing.assert_close(same, base, rtol=0, atol=0)
    assert not torch.allclose(other, base)


@pytest.mark.parametrize("modality", ["vision", "audio"])
def test_clips_axis_is_mean_of_clip_embeddings(tiny, modality):
    clips = sample_inputs(batch=3)[modality].unsqueeze(0)  # [1, 3 clips, ...]
    with torch.no_grad():
        per_clip = tiny({modality: clips[0]})[modality]  # [3, out]
        pooled = tiny({modality: clips})[modality]
    assert pooled.shape == (1, TINY["out_embed_dim"])
    torch.testing.assert_close(pooled, per_clip.mean(dim=0, keepdim=True))


def test_image_is_a_video_of_two_equal_frames(tiny):
    image = sample_inputs()["vision"]
    video = image.unsqueeze(2).expand(-1, -1, 2, -1, -1)  # [B, 3, 2, H, W]
    with torch.no_grad():
        from_image = tiny({"vision": image})["vision"]
        from_video = tiny({"vision": video.unsqueeze(1)})["vision"]  # one clip per sample
    torch.testing.assert_close(from_video, from_image)


def test_eval_forward_is_deterministic(tiny):
    inputs = sample_inputs()
    with torch.no_grad():
        first, second = tiny(inputs), tiny(inputs)
    assert list(first) == list(SCALES)
    for modality in SCALES:
        assert torch.equal(first[modality], second[modality]), modality


def test_keep_modalities_drops_the_rest_and_missing_branch_is_a_clear_error():
    torch.manual_seed(0)
    full = ImageBindModel(**TINY).eval()
    inputs = sample_inputs()
    with torch.no_grad():
        expected = full({"vision": inputs["vision"]})["vision"]
    model = ImageBindModel(**TINY).eval()
    model.load_state_dict(full.state_dict(), strict=True)
    model.keep_modalities(["vision"])
    assert model.modalities == ["vision"]
    assert {key.split(".")[1] for key in model.state_dict()} == {"vision"}
    with torch.no_grad():
        torch.testing.assert_close(model({"vision": inputs["vision"]})["vision"], expected)
    with pytest.raises(KeyError, match="'text'.*holds \\['vision'\\]"):
        model({"text": inputs["text"]})
    del full.modality_trunks["audio"]
    with pytest.raises(KeyError, match="'audio'"):
        full({"audio": inputs["audio"]})
    with pytest.raises(KeyError, match="unknown \\['point'\\]"):
        full.keep_modalities(["point"])


def test_none_inputs_are_skipped(tiny):
    with torch.no_grad():
        out = tiny({"vision": None, "imu": sample_inputs()["imu"]})
    assert list(out) == ["imu"]


@pytest.mark.parametrize("input_hw,kernel,stride", [
    ((3, 2, 224, 224), (2, 14, 14), (2, 14, 14)),
    ((3, 4, 224, 224), (2, 14, 14), (2, 14, 14)),
    ((1, 128, 204), (16, 16), (10, 10)),
    ((1, 224, 224), (16, 16), (16, 16)),
    ((1, 64, 100), (8, 8), (6, 6)),
])
def test_patch_layout_arithmetic_equals_running_the_convolution(input_hw, kernel, stride):
    conv = (nn.Conv3d if len(kernel) == 3 else nn.Conv2d)(input_hw[0], 1, kernel, stride, bias=False)
    out = conv(torch.zeros(1, *input_hw))
    assert conv_output_shape(input_hw[1:], kernel, stride) == tuple(out.shape[2:])


def test_bad_hyper_parameters_are_rejected():
    with pytest.raises(ValueError, match="imu_kernel_size=4"):
        ImageBindModel(**TINY, imu_kernel_size=4)
    with pytest.raises(ValueError, match="audio_embed_dim=18 is not divisible by audio_num_heads=4"):
        ImageBindModel(**{**TINY, "audio_embed_dim": 18, "audio_num_heads": 4})


def test_inputs_of_the_wrong_size_are_clear_errors(tiny):
    with pytest.raises(ValueError, match="only the vision layout can be resized"):
        tiny({"audio": torch.zeros(1, 1, 128, 104)})
    with pytest.raises(ValueError, match="text input must be token ids \\[B, 77\\]"):
        tiny({"text": torch.zeros(1, 10, dtype=torch.long)})


def test_bf16_weights_and_autocast_stay_close_to_float32(tiny):
    inputs = sample_inputs()
    with torch.no_grad():
        expected = tiny(inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_out = tiny(inputs)
        bf16 = ImageBindModel(**TINY).eval()
        bf16.load_state_dict(tiny.state_dict(), strict=True)
        bf16_out = bf16.to(torch.bfloat16)(inputs)  # float32 inputs are cast by the stems
    for modality, ref in expected.items():
        for out in (autocast_out[modality], bf16_out[modality]):
            assert out.dtype == torch.bfloat16
            error = (out.float() - ref).abs().max() / ref.abs().max()
            assert error < 0.05, (modality, error.item())
