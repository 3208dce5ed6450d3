"""Hugging Face's LLaMA layout -> Meta's: key names, params.json, and the rotary permutation.

Hugging Face's conversion script reorders the rows of wq and wk so that each head's rotary pairs
are (x[i], x[i + D/2]) ("rotate_half") instead of Meta's interleaved (x[2i], x[2i+1]); the
functions here undo that, so that a `LlamaForCausalLM` state dict runs in our Transformer.
A config that describes something our Transformer does not compute (rotary scaling, biases,
another activation, another architecture) is refused with the reason.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

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
EMBEDDING_KEY, OUTPUT_KEY = "tok_embeddings.weight", "output.weight"
_ROTARY_BUFFER_SUFFIX = "rotary_emb.inv_freq"  # older .bin files saved HF's rotary buffers: recomputed

# Config entries that must hold these values for the weights to mean what our Transformer computes.
_REQUIRED_CONFIG = {
    "model_type": ("llama", "only LLaMA's architecture is supported"),
    "hidden_act": ("silu", "LLaMA's feed-forward is SwiGLU (silu)"),
    "attention_bias": (False, "LLaMA's attention has no biases"),
    "mlp_bias": (False, "LLaMA's feed-forward has no biases"),
}


class MetaName(NamedTuple):
    """Where a Hugging Face tensor goes in Meta's layout."""

    key: str
    rotary_heads: int | None
    """Heads whose rotary row order to undo (wq: n_heads, wk: n_kv_heads); None: taken as it is."""


def check_hf_config(config: Mapping[str, Any]) -> None:
    """Refuse a config.json whose model our Transformer cannot compute, saying why."""
    for name, (required, why) in _REQUIRED_CONFIG.items():
        if name in config and config[name] != required:
            raise ValueError(f"config.json has {name}={config[name]!r}; {why}, so only {name}={required!r} "
                             "can be loaded (LLaMA-1 and LLaMA-2 checkpoints have it)")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"config.json asks for rope type {rope_type!r} (rotary scaling), which is not supported: "
                         "only plain rotary embedding is (LLaMA-1, LLaMA-2)")


def params_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """params.json contents for a Hugging Face LlamaConfig (as its to_dict() or config.json gives).

    Meta's params.json has no feed-forward width, only a rule (ModelArgs.ffn_hidden_dim); the
    multiple_of / ffn_dim_multiplier written here make that rule give intermediate_size exactly.
    """
    check_hf_config(config)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
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


def hf_rows_of(meta_rows: Sequence[int], n_rows: int, n_heads: int) -> list[int]:
    """The Hugging Face row that holds each of `meta_rows` of an [n_rows, dim] wq / wk weight."""
    hf_row_at = unpermute_rotary_rows(torch.arange(n_rows).view(n_rows, 1), n_heads).view(n_rows)
    return [int(hf_row_at[row]) for row in meta_rows]


def meta_name(hf_key: str, params: Mapping[str, Any]) -> MetaName | None:
    """Meta's name (and the rotary undoing) for a LlamaForCausalLM key; None for HF's rotary buffers.

    A key with no Meta counterpart raises KeyError naming it.
    """
    if hf_key.endswith(_ROTARY_BUFFER_SUFFIX):
        return None
    if hf_key in _TOP_KEYS:
        return MetaName(_TOP_KEYS[hf_key], None)
    parts = hf_key.split(".", 3)  # 'model', 'layers', N, rest
    if len(parts) != 4 or parts[:2] != ["model", "layers"] or parts[3] not in _LAYER_KEYS:
        raise KeyError(hf_key)
    heads = {"self_attn.q_proj.weight": params["n_heads"],
             "self_attn.k_proj.weight": params.get("n_kv_heads") or params["n_heads"]}.get(parts[3])
    return MetaName(f"layers.{parts[2]}.{_LAYER_KEYS[parts[3]]}", heads)


def _meta_order(meta_key: str) -> tuple[int, int, int]:
    """Meta's file order: the embedding, layer by layer (wq, wk, wv, wo, w1, w2, w3, norms), the final norm, the output."""
    if meta_key.startswith("layers."):
        _, layer, rest = meta_key.split(".", 2)
        return 1, int(layer), list(_LAYER_KEYS.values()).index(rest)
    return (0 if meta_key == EMBEDDING_KEY else 2 if meta_key == "norm.weight" else 3), 0, 0


def meta_names(hf_keys: Sequence[str], params: Mapping[str, Any]) -> dict[str, tuple[str, MetaName]]:
    """Meta key -> (Hugging Face key, MetaName) for every weight, in Meta's order; unknown keys are
    one error naming them."""
    names, unknown = {}, []
    for hf_key in hf_keys:
        try:
            name = meta_name(hf_key, params)
        except KeyError:
            unknown.append(hf_key)
            continue
        if name is not None:
            names[name.key] = (hf_key, name)
    if unknown:
        raise ValueError(f"Hugging Face keys with no Meta counterpart: {', '.join(sorted(unknown)[:10])}")
    return {key: names[key] for key in sorted(names, key=_meta_order)}


def to_meta(tensor: torch.Tensor, name: MetaName) -> torch.Tensor:
    """A Hugging Face tensor in Meta's row order."""
    return tensor if name.rotary_heads is None else unpermute_rotary_rows(tensor, name.rotary_heads)
