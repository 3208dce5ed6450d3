"""ImageBind-LLM with random weights, built straight on the device: the benchmark's model.

It is constructed on the meta device, ImageBind's branches other than vision are dropped, and
the rest is allocated once on the device, frozen tensors in the frozen dtype and trainable and
released ones in float32 (as ImageBindLLM keeps them), then filled there. No checkpoint is read
and no float32 copy of the frozen 7B ever exists.

The values are random but not degenerate: every matrix N(0, 1 / fan-in), norm weights 1, other
vectors N(0, 0.02). Gates and LoRA's second factors, zero in a fresh model, are random too, so
that the image path and LoRA change the loss (the benchmark's loss check compares paths).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from exps.tiny_assets import TINY_IMAGEBIND_ARGS, TINY_LLAMA_PARAMS, TOKENIZER_VOCAB
from model.adapter import ImageBindLLM
from model.imagebind import ModalityType
from model.llama import ModelArgs, RMSNorm
from model.meta_device import on_meta_device

# Meta's params.json of LLaMA-7B; its tokenizer has 32000 words.
LLAMA_7B_PARAMS = {"dim": 4096, "multiple_of": 256, "n_heads": 32, "n_layers": 32, "norm_eps": 1e-06, "vocab_size": -1}
LLAMA_VOCAB_SIZE = 32000

# The tiny configuration (--tiny, and the CPU): the demo's shapes, seconds per step on a CPU, same
# code path; two vision blocks, so that one compiled graph serves more than one block as at 7B.
TINY_BENCH_IMAGEBIND_ARGS = {**TINY_IMAGEBIND_ARGS, "vision_num_blocks": 2}


def model_shape(tiny: bool) -> tuple[ModelArgs, dict[str, Any] | None]:
    """LLaMA's arguments and ImageBind's (None: ImageBind-Huge) of the 7B or the tiny configuration."""
    if tiny:
        return ModelArgs.from_params(TINY_LLAMA_PARAMS, vocab_size=TOKENIZER_VOCAB), TINY_BENCH_IMAGEBIND_ARGS
    return ModelArgs.from_params(LLAMA_7B_PARAMS, vocab_size=LLAMA_VOCAB_SIZE), None


def meta_model(phase: str, tiny: bool, frozen_dtype: torch.dtype) -> ImageBindLLM:
    """The model of `phase` on the meta device (shapes and dtypes, no storage), ImageBind's vision
    branch only: dropped before allocating, the other branches never exist."""
    llama_args, imagebind_args = model_shape(tiny)
    with on_meta_device():
        model = ImageBindLLM(llama_args, phase, imagebind_args, frozen_dtype=frozen_dtype)
    model.image_bind.keep_modalities([ModalityType.VISION])
    return model


def build_random_model(phase: str, tiny: bool, device: torch.device, frozen_dtype: torch.dtype,
                       seed: int) -> ImageBindLLM:
    """The model of `phase` on `device` with random weights (see the module docstring)."""
    model = meta_model(phase, tiny, frozen_dtype)
    model.to_empty(device=device)  # the rotary tables are recomputed by Transformer._apply
    randomise_(model, seed)
    model.forget_cached_embeddings()
    return model


@torch.no_grad()
def randomise_(model: nn.Module, seed: int) -> None:
    """Fill every parameter in place, on its device (see the module docstring)."""
    generator = None
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if generator is None:
                generator = torch.Generator(param.device).manual_seed(seed)
            if isinstance(module, (RMSNorm, nn.LayerNorm)) and name == "weight":
                param.fill_(1.0)
            elif param.ndim >= 2:
                param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
            else:
                param.normal_(0.0, 0.02, generator=generator)
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point() and not torch.isfinite(buffer).all():
            raise ValueError(f"buffer {name} was left undefined by allocation: recompute it after to_empty")
