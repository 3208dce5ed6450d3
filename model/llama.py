"""LLaMA in Meta's layout, plus the three things ImageBind-LLM adds to it.

The plain model (`adapter_layers=0`, `w_bias=False`, `w_lora=False`) has exactly the state-dict keys
of Meta's `consolidated.NN.pth`. The additions, all initialised so that an untrained model computes
what the plain one does:

- a gated prefix token in the last `adapter_layers` layers: `attention.gate` (zeros, one per head)
  scales the values of one extra token that the layer's attention reads;
- biases on wq, wo, w1, w2, w3 (zeros);
- LoRA on wq, wk, wv, wo, w1, w2, w3: `lora_<w>_l1` then `lora_<w>_l2` (the second factor zeros).

Names follow the released checkpoints (tests/contracts/); the numerics follow Meta's reference
(RMSNorm in float32, interleaved rotary pairs, SwiGLU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

# The keys of Meta's params.json (ModelArgs has more: what the adapter adds).
PARAMS_JSON_FIELDS = (
    "dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
    "norm_eps", "rope_theta",
)


@dataclass
class ModelArgs:
    """The shape of a LLaMA model: the fields of Meta's params.json, then our additions."""

    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None
    """Key/value heads for grouped-query attention; None means n_heads (plain multi-head)."""
    vocab_size: int = -1
    """-1 (as Meta's params.json says) means "as many as the tokenizer has": see from_params."""
    multiple_of: int = 256
    """The feed-forward width is rounded up to a multiple of this."""
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    max_seq_len: int = 512
    """Longest sequence (prompt plus answer) the rotary tables and the KV cache cover; the reference uses 512."""
    w_bias: bool = False
    """Zero-initialised biases on wq, wo, w1, w2, w3 (fine-tuning)."""
    w_lora: bool = False
    """LoRA factors on wq, wk, wv, wo, w1, w2, w3 (fine-tuning)."""
    lora_rank: int = 16
    adapter_layers: int = 0
    """How many of the last layers read a gated prefix token (ImageBind-LLM adapts all of them)."""

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}: set dim to a multiple of n_heads")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head size dim/n_heads={self.dim // self.n_heads} is odd: rotary embedding needs it even")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} (or be None)")
        if self.vocab_size != -1 and self.vocab_size < 1:
            raise ValueError(f"vocab_size={self.vocab_size}: give the tokenizer's size, or -1 to fill it in later")
        if not 0 <= self.adapter_layers <= self.n_layers:
            raise ValueError(f"adapter_layers={self.adapter_layers} must lie in 0..n_layers={self.n_layers}")
        if self.lora_rank < 1:
            raise ValueError(f"lora_rank={self.lora_rank} must be at least 1")
        if self.max_seq_len < 1:
            raise ValueError(f"max_seq_len={self.max_seq_len} must be at least 1")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """SwiGLU width as Meta computes it: 2/3 of 4*dim, times the multiplier, rounded up."""
        hidden = int(2 * (4 * self.dim) / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], vocab_size: int | None = None, **overrides: Any) -> ModelArgs:
        """Build from the contents of params.json, then `overrides`.

        Keys this class does not know are ignored with one warning. A vocab_size of -1 is replaced
        by `vocab_size` (the tokenizer's `n_words`); when params.json gives a size it wins.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            logger.warning("params.json keys ignored (not LLaMA model arguments): %s", ", ".join(unknown))
        values = {key: value for key, value in params.items() if key in known}
        values.update(overrides)
        if values.get("vocab_size", -1) == -1 and vocab_size is not None:
            values["vocab_size"] = vocab_size
        elif vocab_size is not None and values["vocab_size"] != vocab_size:
            logger.warning("params.json says vocab_size=%d but the tokenizer has %d words; using %d",
                           values["vocab_size"], vocab_size, values["vocab_size"])
        return cls(**values)


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 whatever the input dtype (as Meta's), returned in
    the input's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        # A trained norm keeps a float32 weight, which would promote a bf16 product to float32. Every
        # consumer of a norm is a linear layer that autocast rounds to bf16 anyway, so rounding once
        # here gives the same numbers, without a float32 copy and a cast per consumer (a LoRA factor
        # would save its own bf16 copy for backward). In float32 this cast does nothing.
        return (normed.type_as(x) * self.weight).type_as(x)


class LoRADown(nn.Linear):
    """First LoRA factor (`lora_<w>_l1`): nn.Linear's default initialisation, no bias."""

    def __init__(self, in_features: int, rank: int):
        super().__init__(in_features, rank, bias=False)


class LoRAUp(nn.Linear):
    """Second LoRA factor (`lora_<w>_l2`): starts at zero, so the update starts at zero."""

    def __init__(self, rank: int, out_features: int):
        super().__init__(rank, out_features, bias=False)

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.weight)


def add_lora(parent: nn.Module, name: str, in_features: int, out_features: int, rank: int) -> None:
    """Give `parent.<name>` a LoRA pair, as siblings `lora_<name>_l1/_l2` (the checkpoints' names)."""
    parent.add_module(f"lora_{name}_l1", LoRADown(in_features, rank))
    parent.add_module(f"lora_{name}_l2", LoRAUp(rank, out_features))


def linear_with_lora(parent: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """`parent.<name>(x)`, plus its LoRA update when the parent has one."""
    y = getattr(parent, name)(x)
    down = getattr(parent, f"lora_{name}_l1", None)
    if down is not None:
        y = y + getattr(parent, f"lora_{name}_l2")(down(x))
    return y


def rotary_tables(head_dim: int, end: int, theta: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each [end, head_dim // 2], float32 (Meta's frequencies)."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(end, device=device).float(), freqs)
    return angles.cos(), angles.sin()


def apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, S, H, D] by position; (x[2i], x[2i+1]) is one complex number, as in Meta's code.

    cos, sin: [S, D // 2]. Computed in float32, returned in x's dtype.
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)  # [B, S, H, D/2, 2]
    real, imag = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(3).type_as(x)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, S, n_kv_heads, D] -> [B, S, n_kv_heads * n_rep, D], each kv head serving n_rep query heads."""
    if n_rep == 1:
        return x
    batch, seq, n_kv, head_dim = x.shape
    return x[:, :, :, None, :].expand(batch, seq, n_kv, n_rep, head_dim).reshape(batch, seq, n_kv * n_rep, head_dim)


class KVCache:
    """Keys and values of one layer for the positions seen so far: [B, max_len, n_kv_heads, D].

    Allocated on the first update, in the dtype and on the device of the keys it receives.
    """

    def __init__(self, batch_size: int, max_len: int):
        self.batch_size = batch_size
        self.max_len = max_len
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def update(self, start_pos: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store positions start_pos.. and return all keys and values up to the last one stored."""
        end = start_pos + keys.shape[1]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; position {end - 1} asked for")
        if self.keys is None:
            shape = (self.batch_size, self.max_len, *keys.shape[2:])
            self.keys = keys.new_zeros(shape)
            self.values = values.new_zeros(shape)
        self.keys[:, start_pos:end] = keys
        self.values[:, start_pos:end] = values
        return self.keys[:, :end], self.values[:, :end]


def causal_mask(n_queries: int, n_keys: int, device: torch.device) -> torch.Tensor | None:
    """Boolean [n_queries, n_keys] mask (True = may attend) for queries that are the last n_queries keys.

    None where SDPA's own flags suffice: one query sees every key; and with as many queries as keys
    SDPA's is_causal does the job. Under KV caching the queries start at n_keys - n_queries, so the
    mask is widened by that many fully visible columns on the left.
    """
    if n_queries == 1 or n_queries == n_keys:
        return None
    offset = n_keys - n_queries
    rows = torch.arange(n_queries, device=device)[:, None]
    cols = torch.arange(n_keys, device=device)[None, :]
    return cols <= rows + offset


class Attention(nn.Module):
    """Multi-head (or grouped-query) self-attention with rotary positions, through SDPA."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.kv_heads
        self.head_dim = args.head_dim
        q_width, kv_width = args.n_heads * args.head_dim, args.kv_heads * args.head_dim
        self.wq = nn.Linear(args.dim, q_width, bias=args.w_bias)
        self.wk = nn.Linear(args.dim, kv_width, bias=False)  # the reference never biases wk, wv
        self.wv = nn.Linear(args.dim, kv_width, bias=False)
        self.wo = nn.Linear(q_width, args.dim, bias=args.w_bias)
        if args.w_lora:
            add_lora(self, "wq", args.dim, q_width, args.lora_rank)
            add_lora(self, "wk", args.dim, kv_width, args.lora_rank)
            add_lora(self, "wv", args.dim, kv_width, args.lora_rank)
            add_lora(self, "wo", q_width, args.dim, args.lora_rank)

    def attend(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int,
               cache: KVCache | None) -> torch.Tensor:
        """The per-head attention output, [B, n_heads, S, head_dim], before wo."""
        batch, seq, _ = x.shape
        xq = linear_with_lora(self, "wq", x).view(batch, seq, self.n_heads, self.head_dim)
        xk = linear_with_lora(self, "wk", x).view(batch, seq, self.n_kv_heads, self.head_dim)
        xv = linear_with_lora(self, "wv", x).view(batch, seq, self.n_kv_heads, self.head_dim)
        xq, xk = apply_rotary_emb(xq, cos, sin), apply_rotary_emb(xk, cos, sin)
        if cache is not None:
            xk, xv = cache.update(start_pos, xk, xv)
        elif start_pos:
            raise ValueError(f"start_pos={start_pos} without a KV cache: earlier positions are unknown")
        n_rep = self.n_heads // self.n_kv_heads
        # [B, S, H, D] -> [B, H, S, D], the layout SDPA takes
        q = xq.transpose(1, 2)
        k = repeat_kv(xk, n_rep).transpose(1, 2)
        v = repeat_kv(xv, n_rep).transpose(1, 2)
        mask = causal_mask(q.shape[2], k.shape[2], x.device)
        is_causal = mask is None and q.shape[2] > 1
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)

    def project_out(self, heads: torch.Tensor) -> torch.Tensor:
        """[B, n_heads, S, head_dim] -> wo (plus LoRA) -> [B, S, dim]."""
        batch, _, seq, _ = heads.shape
        merged = heads.transpose(1, 2).reshape(batch, seq, -1)
        return linear_with_lora(self, "wo", merged)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCache | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        if prefix is not None:
            raise ValueError("this layer has no adapter gate; raise ModelArgs.adapter_layers to adapt it")
        return self.project_out(self.attend(x, cos, sin, start_pos, cache))


class GatedPrefixAttention(Attention):
    """Attention that also reads one prefix token through a zero-initialised gate per head.

    With a single prefix token its softmax weight is 1, so each head's output gains
    tanh(gate[h]) * wv(prefix)[h], the same at every position (the reference's shortcut), before
    wo. The prefix goes through the plain wv: no LoRA, as in the reference.
    """

    def __init__(self, args: ModelArgs):
        super().__init__(args)
        self.gate = nn.Parameter(torch.zeros(1, args.n_heads, 1, 1))  # name fixed by the checkpoints

    def reset_gate(self) -> None:
        nn.init.zeros_(self.gate)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCache | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        heads = self.attend(x, cos, sin, start_pos, cache)
        if prefix is not None:
            batch = prefix.shape[0]
            prefix_v = self.wv(prefix).view(batch, 1, self.n_kv_heads, self.head_dim)
            # [B, 1, n_kv, D] -> [B, H, 1, D]: broadcast over the S positions
            prefix_v = repeat_kv(prefix_v, self.n_heads // self.n_kv_heads).transpose(1, 2)
            heads = heads + self.gate.tanh() * prefix_v
        return self.project_out(heads)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), each projection with its LoRA update when present."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        hidden = args.ffn_hidden_dim
        self.w1 = nn.Linear(args.dim, hidden, bias=args.w_bias)
        self.w2 = nn.Linear(hidden, args.dim, bias=args.w_bias)
        self.w3 = nn.Linear(args.dim, hidden, bias=args.w_bias)
        if args.w_lora:
            add_lora(self, "w1", args.dim, hidden, args.lora_rank)
            add_lora(self, "w2", hidden, args.dim, args.lora_rank)
            add_lora(self, "w3", args.dim, hidden, args.lora_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gated = F.silu(linear_with_lora(self, "w1", x)) * linear_with_lora(self, "w3", x)
        return linear_with_lora(self, "w2", gated)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, adapted: bool):
        super().__init__()
        self.attention = GatedPrefixAttention(args) if adapted else Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos: int = 0,
                cache: KVCache | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
        # The prefix token enters attention as it is: the reference does not norm it.
        h = x + self.attention(self.attention_norm(x), cos, sin, start_pos, cache, prefix)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """LLaMA with Meta's state-dict keys (plus the additions the arguments ask for)."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        if args.vocab_size < 1:
            raise ValueError(
                "ModelArgs.vocab_size is -1 (params.json's 'as many as the tokenizer has'): build the "
                "arguments with ModelArgs.from_params(params, vocab_size=tokenizer.n_words)"
            )
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        first_adapted = args.n_layers - args.adapter_layers
        self.layers = nn.ModuleList(TransformerBlock(args, adapted=i >= first_adapted) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        # Not persistent: Meta's files may hold 'rope.freqs', which we never read; the tables are
        # recomputed from the arguments whenever the model moves (see _apply). On the meta device
        # there is nothing to compute (and its arithmetic would import torch._dynamo: seconds).
        table_shape = (args.max_seq_len, args.head_dim // 2)
        self.register_buffer("rope_cos", torch.empty(table_shape), persistent=False)
        self.register_buffer("rope_sin", torch.empty(table_shape), persistent=False)
        if not self.rope_cos.is_meta:
            self.init_rotary_tables()
        # When training (see hidden_states): keep only each layer's input for backward and run the
        # layer again there, instead of keeping its activations (--activation_checkpointing).
        self.activation_checkpointing = False
        self.init_added_parameters()

    def init_rotary_tables(self) -> None:
        """Recompute the rotary tables in place, on their device."""
        cos, sin = rotary_tables(self.args.head_dim, self.args.max_seq_len, self.args.rope_theta, self.rope_cos.device)
        with torch.no_grad():
            self.rope_cos.copy_(cos)
            self.rope_sin.copy_(sin)

    def _apply(self, fn, recurse=True):
        # Every move (.to, .cuda, to_empty) goes through here. to_empty leaves buffers undefined, so
        # a model built on the meta device and then allocated would rotate by garbage: recompute.
        result = super()._apply(fn, recurse)
        if not self.rope_cos.is_meta:
            self.init_rotary_tables()
        return result

    def init_added_parameters(self) -> None:
        """Initialise what Meta's file does not hold, as the reference does: zero gates and biases
        (Meta's LLaMA has no bias, so every bias here is an addition), LoRA's first factor as
        nn.Linear, its second factor zeros."""
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (LoRADown, LoRAUp)):
                    module.reset_parameters()
                elif isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
                elif isinstance(module, GatedPrefixAttention):
                    module.reset_gate()

    def new_kv_caches(self, batch_size: int, max_len: int) -> list[KVCache]:
        """One empty cache per layer, for generation."""
        if max_len > self.args.max_seq_len:
            raise ValueError(f"a KV cache of {max_len} positions exceeds max_seq_len={self.args.max_seq_len}")
        return [KVCache(batch_size, max_len) for _ in self.layers]

    def hidden_states(self, tokens: torch.Tensor, start_pos: int = 0, prefixes: Sequence[torch.Tensor] | None = None,
                      caches: Sequence[KVCache] | None = None) -> torch.Tensor:
        """The final-normed hidden states [B, S, dim] of tokens [B, S] at positions start_pos...

        `prefixes`: one [B, 1, dim] token per adapted layer (or a [adapter_layers, B, 1, dim] tensor).
        `caches`: the per-layer KV caches of earlier calls (generation); None for a full sequence.
        """
        seq = tokens.shape[1]
        if start_pos + seq > self.args.max_seq_len:
            raise ValueError(f"positions up to {start_pos + seq} exceed max_seq_len={self.args.max_seq_len}: raise "
                             "ModelArgs.max_seq_len or shorten the sequence")
        if prefixes is not None and len(prefixes) != self.args.adapter_layers:
            raise ValueError(f"{len(prefixes)} prefix tokens for {self.args.adapter_layers} adapted layers")
        cos = self.rope_cos[start_pos:start_pos + seq]
        sin = self.rope_sin[start_pos:start_pos + seq]
        first_adapted = self.args.n_layers - self.args.adapter_layers
        recompute = self.activation_checkpointing and caches is None and torch.is_grad_enabled()
        h = self.tok_embeddings(tokens)
        for i, layer in enumerate(self.layers):
            prefix = prefixes[i - first_adapted] if prefixes is not None and i >= first_adapted else None
            if recompute:
                # The layers draw no random numbers, so there is no RNG state to save and restore.
                h = checkpoint(layer, h, cos, sin, start_pos, None, prefix, use_reentrant=False,
                               preserve_rng_state=False)
            else:
                h = layer(h, cos, sin, start_pos, None if caches is None else caches[i], prefix)
        return self.norm(h)

    def forward(self, tokens: torch.Tensor, start_pos: int = 0, prefixes: Sequence[torch.Tensor] | None = None,
                caches: Sequence[KVCache] | None = None) -> torch.Tensor:
        """Float32 logits [B, S, vocab_size] for every position (arguments as hidden_states)."""
        return self.output(self.hidden_states(tokens, start_pos, prefixes, caches)).float()

    def last_logits(self, tokens: torch.Tensor, start_pos: int, prefixes: Sequence[torch.Tensor] | None,
                    caches: Sequence[KVCache] | None) -> torch.Tensor:
        """Float32 logits [B, vocab_size] of the last position only (one generation step)."""
        hidden = self.hidden_states(tokens, start_pos, prefixes, caches)
        return self.output(hidden[:, -1]).float()

