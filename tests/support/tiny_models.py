"""Tiny models with random tensors, and the tiny files a user would have (LLaMA folder, tokenizer,
ImageBind weights, adapter checkpoints)."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from model.adapter import ImageBindLLM
from model.layout import BRIDGE_MODULES, PREFIX_MODULE
from model.llama import PARAMS_JSON_FIELDS, ModelArgs
from model.files.meta_folder import write_llama_folder
from model.files.build import meta_llama_keys

# Every branch one block of width 16: seconds on a CPU, 224 x 224 images as the real model.
TINY_IMAGEBIND = {f"{m}_{k}": v for m in ("vision", "text", "audio", "depth", "thermal", "imu")
                  for k, v in (("embed_dim", 16), ("num_blocks", 1), ("num_heads", 2))}
TINY_IMAGEBIND["out_embed_dim"] = 24


def tiny_llama_args(**overrides) -> ModelArgs:
    """Two layers, grouped-query attention (4 query heads, 2 kv heads), width 32."""
    values = dict(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=-1, multiple_of=16, norm_eps=1e-5,
                  max_seq_len=64, lora_rank=4)
    values.update(overrides)
    return ModelArgs(**values)


def randomise_(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (norm weights near 1), so that no gate, bias or LoRA factor is a no-op."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            values = torch.randn(param.shape, generator=gen) * (0.5 / math.sqrt(param.shape[-1])) + (param.ndim == 1)
            param.copy_(values)
    return module


def randomise_llama_and_adapter_(model: ImageBindLLM, seed: int) -> ImageBindLLM:
    """Random LLaMA (Meta's tensors and the additions), bridge and prefix; ImageBind keeps its init."""
    randomise_(model.llama, seed)
    for offset, name in enumerate(BRIDGE_MODULES + (PREFIX_MODULE,), start=1):
        randomise_(getattr(model, name), seed + offset)
    return model


def tiny_model(phase: str, tokenizer=None, seed: int = 0, randomise: bool = True, vocab_size: int = 64,
               frozen_dtype: torch.dtype = torch.float32, **arg_overrides) -> ImageBindLLM:
    torch.manual_seed(seed)
    args = tiny_llama_args(vocab_size=-1 if tokenizer is not None else vocab_size, **arg_overrides)
    model = ImageBindLLM(args, phase, TINY_IMAGEBIND, tokenizer=tokenizer, frozen_dtype=frozen_dtype)
    return randomise_llama_and_adapter_(model, seed) if randomise else model


def random_tokens(batch: int, seq: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """Token ids in 3..vocab-1 (never pad 0, bos 1 or eos 2)."""
    return torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def random_images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def write_user_files(root: Path, model: ImageBindLLM, tokenizer_path: Path, llama_type: str = "7B") -> tuple[Path, Path]:
    """What a user holds for `model`: LLAMA_DIR (tokenizer.model, <llama_type>/params.json and
    consolidated.00.pth with Meta's tensors) and the ImageBind weights file. Returns both paths."""
    llama_dir = root / "llama"
    llama_dir.mkdir(parents=True)
    shutil.copy(tokenizer_path, llama_dir / "tokenizer.model")
    meta_keys = meta_llama_keys(model.llama.args)
    meta_state = {k: v for k, v in model.llama.state_dict().items() if k in meta_keys}
    write_llama_folder(llama_dir / llama_type, meta_state, params_json(model.llama.args))
    imagebind_path = root / "imagebind_tiny.pth"
    torch.save(model.image_bind.state_dict(), imagebind_path)
    return llama_dir, imagebind_path


META_SPLIT_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1, "tok_embeddings": 1}


def split_like_meta(state: dict[str, torch.Tensor], n_shards: int) -> list[dict[str, torch.Tensor]]:
    shards = [{} for _ in range(n_shards)]
    for key, tensor in state.items():
        dim = META_SPLIT_DIM.get(key.rsplit(".", 2)[-2])
        pieces = tensor.chunk(n_shards, dim=dim) if dim is not None else [tensor] * n_shards
        for shard, piece in zip(shards, pieces):
            shard[key] = piece.clone()
    return shards


def save_checkpoint(path: Path, model_state: dict, **records) -> Path:
    torch.save({"model": model_state, **records}, path)
    return path


def params_json(args: ModelArgs) -> dict:
    """What Meta's params.json holds for `args` (None values left out)."""
    values = asdict(args)
    return {key: values[key] for key in PARAMS_JSON_FIELDS if values[key] is not None}


def all_logits(model: ImageBindLLM, tokens: torch.Tensor, images: torch.Tensor,
               has_image: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 logits [B, S, vocab] of every position, in the model's precision."""
    with model.precision(tokens.device):
        return model.llama.output(model.hidden_states(tokens, images, has_image)).float()
