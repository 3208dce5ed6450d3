"""ImageBind numerics: equal to the public code's outputs (a golden fixture, see
tests/fixtures/imagebind_README.md) and to a hand-written vision forward in float64."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.imagebind import ImageBindModel

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "imagebind_tiny_reference.pt"
TOKEN_TABLE = "modality_preprocessors.text.token_embedding.weight"
# Float32 rounding: the outputs reach 20 (audio's logit scale); on the machine that made the
# fixture the difference is exactly 0.
TOLERANCE = dict(rtol=1e-5, atol=2e-5)


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def model_from(reference: dict) -> ImageBindModel:
    """Our model holding the public model's weights (strict), text table rebuilt from its rows."""
    state = dict(reference["state_dict"])
    rows = reference["text_token_rows"]
    table = torch.zeros(reference["text_vocab_size"], rows["rows"].shape[1])
    table[rows["ids"]] = rows["rows"]
    state[TOKEN_TABLE] = table
    model = ImageBindModel(**reference["config"])
    model.load_state_dict(state, strict=True)
    return model


def as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.is_floating_point() else x  # images etc. are stored as float16


def test_keyword_hyper_parameters_equal_the_public_ones(reference):
    ours = {name: p.default for name, p in inspect.signature(ImageBindModel).parameters.items()}
    ours["kernel_size"] = tuple(ours["kernel_size"])
    # The 3D branch's switch and sizes are this project's (the published 3D variant always builds it).
    point = {name: ours.pop(name) for name in [name for name in ours if name.startswith("point_")]}
    assert point == {"point_branch": False, "point_embed_dim": 384, "point_num_blocks": 12, "point_num_heads": 6}
    assert ours == reference["public_defaults"]


def test_outputs_equal_the_public_code(reference):
    model = model_from(reference).eval()
    assert set(reference["outputs"]) == {"vision", "vision_small", "vision_clips", "vision_video",
                                         "text", "audio", "audio_clips", "audio_quiet", "depth",
                                         "thermal", "imu", "imu_quiet"}
    with torch.no_grad():
        for case, (modality, x) in reference["inputs"].items():
            out = model({modality: as_input(x)})[modality]
            torch.testing.assert_close(out, reference["outputs"][case], **TOLERANCE, msg=case)


def test_train_mode_drop_path_and_dropout_draw_like_the_public_code(reference):
    model = model_from(reference).train()
    with torch.no_grad():
        for case, expected in reference["train_outputs"].items():
            modality, x = reference["inputs"][case]
            torch.manual_seed(reference["source"]["train_seed"])
            out = model({modality: as_input(x)})[modality]
            torch.testing.assert_close(out, expected, **TOLERANCE, msg=case)
            assert not torch.allclose(out, reference["outputs"][case]), "train mode drew nothing"


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def handwritten_vision(w: dict[str, torch.Tensor], images: torch.Tensor, num_heads: int,
                       num_blocks: int) -> torch.Tensor:
    """ImageBind's vision branch in plain ops, read off the public code, on checkpoint names."""
    pre, trunk = "modality_preprocessors.vision.", "modality_trunks.vision."

    def norm(x: torch.Tensor, prefix: str) -> torch.Tensor:  # every LayerNorm here has eps 1e-6
        return layer_norm(x, w[prefix + "weight"], w[prefix + "bias"], 1e-6)

    video = torch.cat([images.unsqueeze(2)] * 2, dim=2)  # an image is a video of 2 equal frames
    conv = w[pre + "rgbt_stem.proj.1.weight"]
    patches = F.conv3d(video, conv, stride=conv.shape[2:])  # [B, D, 1, 16, 16]
    x = patches.flatten(2).transpose(1, 2)  # [B, 256, D]
    cls = w[pre + "cls_token"].expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + w[pre + "pos_embedding_helper.pos_embed"]
    x = norm(x, trunk + "pre_transformer_layer.0.")
    batch, length, dim = x.shape
    head_dim = dim // num_heads
    for i in range(num_blocks):
        b = f"{trunk}blocks.{i}."
        y = norm(x, b + "norm_1.")
        qkv = y @ w[b + "attn.in_proj_weight"].T + w[b + "attn.in_proj_bias"]
        q, k, v = (qkv[..., j * dim:(j + 1) * dim].reshape(batch, length, num_heads, head_dim)
                   .permute(0, 2, 1, 3) for j in range(3))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        attended = (weights @ v).permute(0, 2, 1, 3).reshape(batch, length, dim)
        x = x + attended @ w[b + "attn.out_proj.weight"].T + w[b + "attn.out_proj.bias"]
        y = norm(x, b + "norm_2.")
        hidden = gelu(y @ w[b + "mlp.fc1.weight"].T + w[b + "mlp.fc1.bias"])
        x = x + hidden @ w[b + "mlp.fc2.weight"].T + w[b + "mlp.fc2.bias"]
    embedding = norm(x[:, 0], "modality_heads.vision.0.") @ w["modality_heads.vision.2.weight"].T
    return embedding / embedding.norm(dim=-1, keepdim=True)


def test_vision_forward_equals_a_handwritten_float64_computation(reference):
    model = model_from(reference).eval()
    config = reference["config"]
    images = as_input(reference["inputs"]["vision"][1])
    weights = {key: t.double() for key, t in model.state_dict().items()}
    expected = handwritten_vision(weights, images.double(), config["vision_num_heads"],
                                  config["vision_num_blocks"])
    with torch.no_grad():
        out = model({"vision": images})["vision"]
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
