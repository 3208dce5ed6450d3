"""Builders for the Hugging Face tests: tiny LlamaForCausalLM models saved
as users hold them, and our Transformer loaded from a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from model.files.hf_layout import EMBEDDING_KEY, OUTPUT_KEY, meta_names, to_meta
from model.files.llama_folder import llama_state_dict, read_params
from model.llama import ModelArgs, Transformer
from support.tiny_models import randomise_

SHARD_SIZE = "20KB"  # the tiny models below come out as several shards with an index file
TINY_HF_SHAPE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=64, rms_norm_eps=1e-5)


def tiny_hf_model(n_kv_heads: int, vocab_size: int, seed: int = 1, **config) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    values = dict(TINY_HF_SHAPE, num_key_value_heads=n_kv_heads, vocab_size=vocab_size, attn_implementation="eager")
    values.update(config)
    return randomise_(LlamaForCausalLM(LlamaConfig(**values)), seed).eval()


def as_bin_shards(folder: Path) -> None:
    """Turn save_pretrained's safetensors shards into pytorch_model-*.bin shards with their index, as
    older transformers versions wrote them (save_pretrained now writes safetensors only)."""
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    renamed = {name: name.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
               for name in set(index["weight_map"].values())}
    for old, new in renamed.items():
        torch.save(load_file(folder / old), folder / new)
        (folder / old).unlink()
    index["weight_map"] = {key: renamed[name] for key, name in index["weight_map"].items()}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    (folder / "model.safetensors.index.json").unlink()


def save_hf_folder(model: LlamaForCausalLM, folder: Path, file_format: str = "safetensors",
                   tokenizer_path: Path | None = None) -> Path:
    """save_pretrained in shards ('safetensors' or 'bin'), with tokenizer.model inside when given."""
    model.save_pretrained(folder, max_shard_size=SHARD_SIZE)
    if file_format == "bin":
        as_bin_shards(folder)
    if tokenizer_path is not None:
        shutil.copy(tokenizer_path, folder / "tokenizer.model")
    return folder


def transformer_from_folder(folder: Path, vocab_size: int | None = None) -> Transformer:
    """Our plain Transformer with the folder's tensors (either layout), strictly."""
    args = ModelArgs.from_params(read_params(folder), vocab_size=vocab_size, max_seq_len=64)
    model = Transformer(args).eval()
    model.load_state_dict(dict(llama_state_dict(folder)), strict=True)
    return model


def meta_state_dict(hf_state: dict[str, torch.Tensor], params: dict) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict under Meta's names and row order (tied embeddings: the output
    layer is the embedding), through the same name mapping the folder reader uses."""
    meta = {key: to_meta(hf_state[hf_key], name) for key, (hf_key, name) in meta_names(list(hf_state), params).items()}
    if OUTPUT_KEY not in meta and EMBEDDING_KEY in meta:
        meta[OUTPUT_KEY] = meta[EMBEDDING_KEY]
    return meta
