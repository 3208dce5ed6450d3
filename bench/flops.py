"""The useful FLOPs of a training step: what the model FLOP utilisation (MFU) figure counts.

Per non-pad token the frozen LLaMA costs the forward of its linear layers (2 FLOPs per weight) and
the input-gradient half of their backward (2 more): 4 x (the layers' weights + the vocabulary
head), about 26.4 GFLOP at 7B. Attention scores, norms and the small additions (gates, LoRA,
biases) are left out, as in the issue's figure. An image actually encoded costs the forward of
ImageBind's vision branch (no gradient): 2 FLOPs per weight per token, plus attention's two
products, about 0.336 TFLOP for ImageBind-Huge (257 tokens per image).

MFU divides these FLOPs per second by 770 TFLOP/s, bf16 matrix products measured on one H100
(issue 6); on another card the figure is still relative to that H100.
"""

from __future__ import annotations

from torch import nn

from model.imagebind import ImageBindModel, ModalityType
from model.llama import ModelArgs

H100_BF16_FLOPS = 770e12


def llama_flops_per_token(args: ModelArgs) -> float:
    """4 x the weights one token meets in LLaMA's linear layers and head (see the module docstring)."""
    query_width, kv_width = args.n_heads * args.head_dim, args.kv_heads * args.head_dim
    attention = args.dim * (query_width + 2 * kv_width) + query_width * args.dim  # wq, wk, wv, wo
    feed_forward = 3 * args.dim * args.ffn_hidden_dim  # w1, w2, w3
    weights = args.n_layers * (attention + feed_forward) + args.dim * args.vocab_size
    return 4.0 * weights


def vision_flops_per_image(image_bind: ImageBindModel) -> float:
    """Forward FLOPs of ImageBind's vision branch for one image (works on the meta device too)."""
    preprocessor = image_bind.modality_preprocessors[ModalityType.VISION]
    trunk = image_bind.modality_trunks[ModalityType.VISION]
    head = image_bind.modality_heads[ModalityType.VISION]
    positions = preprocessor.pos_embedding_helper
    tokens = positions.pos_embed.shape[1]  # cls + patches
    patches = tokens - positions.num_cls_tokens
    width = positions.pos_embed.shape[2]
    stem = sum(module.weight.numel() for module in preprocessor.modules() if isinstance(module, nn.Conv3d))
    matrices = sum(param.numel() for param in trunk.parameters() if param.ndim == 2)  # q/k/v, out, MLP
    attention = 4 * tokens * tokens * width * len(trunk.blocks)  # scores and weighted values
    head_weights = sum(module.weight.numel() for module in head.modules() if isinstance(module, nn.Linear))
    return 2.0 * (stem * patches + matrices * tokens + head_weights) + attention


def model_flop_utilisation(flops: float, seconds: float) -> float:
    """The fraction of the H100's bf16 matrix rate that `flops` done in `seconds` amount to."""
    return flops / seconds / H100_BF16_FLOPS
