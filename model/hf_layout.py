"""Hugging Face's LLaMA layout -> Meta's: key names, params.json, and the rotary permutation.

Hugging Face's conversion script reorders the rows of wq and wk so that each head's rotary pairs
are (x[i], x[i + D/2]) ("rotate_half") instead of Meta's interleaved (x[2i], x[2i+1]); the
functions here undo that, so that a `LlamaForCausalLM` state dict runs in our Transformer.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

# Hugging Face key (after 'model.layers.N.') -> Meta key (after 'layers.N.').
_LAYER_KEYS = {
    "self_attn.q_proj.weight": "attention.wq.weight",
    "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight",
    "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight",
    "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight",
    "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_KEYS = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}


def params_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """params.json contents for a Hugging Face LlamaConfig (as its to_dict() or config.json gives).

    Meta's params.json has no feed-forward width, only a rule (ModelArgs.ffn_hidden_dim); the
    multiple_of / ffn_dim_multiplier written here make that rule give intermediate_size exactly.
    """
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"rope type {rope_type!r} (rotary scaling) is not supported; only plain rotary embedding is")
    dim, intermediate = config["hidden_size"], config["intermediate_size"]
    meta_rule = int(2 * (4 * dim) / 3)  # before the multiplier and the rounding
    metas_multiple = 256  # what Meta's LLaMA-1 / LLaMA-2 7B and 13B files say
    params = {
        "dim": dim,
        "n_layers": config["num_hidden_layers"],
        "n_heads": config["num_attention_heads"],
        "n_kv_heads": config.get("num_key_value_heads") or config["num_attention_heads"],
        "vocab_size": config["vocab_size"],
        # rounding up to a multiple of intermediate_size lands on it from any width in (0, it]
        "multiple_of": metas_multiple if -(-meta_rule // metas_multiple) * metas_multiple == intermediate else intermediate,
        "norm_eps": config["rms_norm_eps"],
        "rope_theta": rope.get("rope_theta", config.get("rope_theta", 10000.0)),
    }
    if meta_rule > intermediate:
        params["ffn_dim_multiplier"] = intermediate / meta_rule
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != dim // params["n_heads"]:
        raise ValueError(f"head_dim={head_dim} differs from hidden_size/num_attention_heads: not a LLaMA layout we support")
    return params


def unpermute_rotary_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo Hugging Face's per-head row order of wq / wk ([n_heads * D, dim], D = head size)."""
    rows, cols = weight.shape
    half = rows // n_heads // 2
    # HF stored each head's rows as [2, D/2] (first all real parts, then all imaginary); Meta as [D/2, 2]
    return weight.view(n_heads, 2, half, cols).transpose(1, 2).reshape(rows, cols)


def state_dict_from_hf(hf_state: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Meta-layout state dict from a LlamaForCausalLM state dict (tensors are not copied except wq, wk).

    Unknown keys are an error naming them; HF's rotary buffers ('...rotary_emb.inv_freq') are dropped.
    """
    n_heads = params["n_heads"]
    n_kv_heads = params.get("n_kv_heads") or n_heads
    meta: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in hf_state.items():
        if key.endswith("rotary_emb.inv_freq"):
            continue
        if key in _TOP_KEYS:
            meta[_TOP_KEYS[key]] = tensor
            continue
        parts = key.split(".", 3)  # 'model', 'layers', N, rest
        if len(parts) != 4 or parts[:2] != ["model", "layers"] or parts[3] not in _LAYER_KEYS:
            unknown.append(key)
            continue
        meta_key = f"layers.{parts[2]}.{_LAYER_KEYS[parts[3]]}"
        if parts[3] == "self_attn.q_proj.weight":
            tensor = unpermute_rotary_rows(tensor, n_heads)
        elif parts[3] == "self_attn.k_proj.weight":
            tensor = unpermute_rotary_rows(tensor, n_kv_heads)
        meta[meta_key] = tensor
    if unknown:
        raise ValueError(f"Hugging Face keys with no Meta counterpart: {', '.join(sorted(unknown)[:10])}")
    if "output.weight" not in meta and "tok_embeddings.weight" in meta:
        meta["output.weight"] = meta["tok_embeddings.weight"]  # tied embeddings: lm_head is not saved
    return meta
