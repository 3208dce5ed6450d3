"""LLaMA: arguments from params.json, numerics against transformers' LlamaForCausalLM, the KV cache."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from model.files.hf_layout import params_from_hf_config
from model.llama import ModelArgs, Transformer, apply_rotary_emb, rotary_tables
from support.hf_folders import meta_state_dict
from support.tiny_models import random_tokens, randomise_

SEQ = 12


# -- ModelArgs -------------------------------------------------------------------------------------

def test_params_json_unknown_keys_are_ignored_with_one_warning(caplog):
    params = {"dim": 64, "n_layers": 2, "n_heads": 4, "multiple_of": 32, "norm_eps": 1e-6, "vocab_size": -1,
              "max_batch_size": 32, "some_future_key": 1}
    with caplog.at_level(logging.WARNING, logger="model.llama"):
        args = ModelArgs.from_params(params, vocab_size=100)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "max_batch_size" in warnings[0] and "some_future_key" in warnings[0]
    assert (args.dim, args.n_layers, args.n_heads, args.norm_eps, args.vocab_size) == (64, 2, 4, 1e-6, 100)


def test_vocab_size_minus_one_needs_the_tokenizer():
    args = ModelArgs.from_params({"dim": 32, "n_layers": 1, "n_heads": 4, "vocab_size": -1})
    assert args.vocab_size == -1
    with pytest.raises(ValueError, match="tokenizer"):
        Transformer(args)
    assert ModelArgs.from_params({"dim": 32, "n_layers": 1, "n_heads": 4, "vocab_size": 50}, vocab_size=60).vocab_size == 50


@pytest.mark.parametrize("params, hidden", [
    ({"dim": 4096, "multiple_of": 256}, 11008),  # LLaMA 7B
    ({"dim": 5120, "multiple_of": 256}, 13824),  # LLaMA 13B
    ({"dim": 8192, "multiple_of": 4096, "ffn_dim_multiplier": 1.3}, 28672),  # LLaMA-2 70B
])
def test_feed_forward_width_is_metas(params, hidden):
    assert ModelArgs(n_heads=32, **params).ffn_hidden_dim == hidden


@pytest.mark.parametrize("bad, fix", [
    ({"dim": 30, "n_heads": 4}, "n_heads"),
    ({"dim": 32, "n_heads": 4, "n_kv_heads": 3}, "n_kv_heads"),
    ({"dim": 32, "n_heads": 4, "n_layers": 2, "adapter_layers": 3}, "adapter_layers"),
])
def test_bad_arguments_say_what_to_set(bad, fix):
    with pytest.raises(ValueError, match=fix):
        ModelArgs(**bad)


def test_plain_model_has_exactly_metas_keys_and_no_rotary_tensor():
    model = Transformer(ModelArgs(dim=32, n_layers=2, n_heads=4, vocab_size=50, multiple_of=16))
    per_layer = ["attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
                 "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
                 "attention_norm.weight", "ffn_norm.weight"]
    expected = {"tok_embeddings.weight", "norm.weight", "output.weight"} | {
        f"layers.{i}.{name}" for i in range(2) for name in per_layer}
    assert set(model.state_dict()) == expected


# -- numerics --------------------------------------------------------------------------------------

def test_rotary_embedding_equals_metas_complex_formula():
    x = torch.randn(2, 7, 3, 16, generator=torch.Generator().manual_seed(0))
    cos, sin = rotary_tables(16, 7, theta=10000.0)
    # Meta: pairs as complex numbers times polar(1, position * theta^(-2i/D))
    freqs = 1.0 / (10000.0 ** (torch.arange(0, 16, 2)[:8].float() / 16))
    rotation = torch.polar(torch.ones(7, 8), torch.outer(torch.arange(7).float(), freqs))
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(2, 7, 3, 8, 2)) * rotation[None, :, None, :]).flatten(3)
    torch.testing.assert_close(apply_rotary_emb(x, cos, sin), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_kv_heads, rope_theta, intermediate", [
    (4, 10000.0, 88),   # multi-head attention; a width Meta's rule reaches by rounding up
    (2, 10000.0, 64),   # grouped-query attention; a width below Meta's rule
    (1, 500000.0, 96),  # multi-query attention, LLaMA-3's rope_theta
])
def test_logits_equal_transformers_llama(n_kv_heads, rope_theta, intermediate):
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=intermediate, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=n_kv_heads, vocab_size=61, rms_norm_eps=1e-5, rope_theta=rope_theta,
                         max_position_embeddings=64, attn_implementation="eager")
    hf = randomise_(LlamaForCausalLM(config), seed=1).eval()
    params = params_from_hf_config(config.to_dict())
    ours = Transformer(ModelArgs.from_params(params, max_seq_len=64)).eval()
    ours.load_state_dict(meta_state_dict(hf.state_dict(), params), strict=True)
    assert ours.args.ffn_hidden_dim == intermediate and ours.args.kv_heads == n_kv_heads

    tokens = random_tokens(3, SEQ, 61)
    with torch.no_grad():
        expected = hf(tokens).logits
        logits = ours(tokens)
    assert expected.abs().max() > 1  # the comparison is not between near-zero numbers
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def adapted_model(seed: int = 0) -> Transformer:
    args = ModelArgs(dim=32, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=53, multiple_of=16, max_seq_len=32,
                     w_bias=True, w_lora=True, lora_rank=4, adapter_layers=2)
    return randomise_(Transformer(args), seed).eval()


@pytest.mark.parametrize("chunks", [[5, 1, 1, 1, 1], [4, 3, 1, 2]])
def test_kv_cache_equals_recomputing_the_full_sequence(chunks):
    model = adapted_model()
    tokens = random_tokens(2, sum(chunks), 53)
    prefixes = torch.randn(2, 2, 1, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(tokens, prefixes=prefixes)
        caches = model.new_kv_caches(2, sum(chunks))
        start, pieces = 0, []
        for length in chunks:
            pieces.append(model(tokens[:, start:start + length], start, prefixes, caches))
            start += length
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_sequences_beyond_max_seq_len_are_refused():
    model = adapted_model()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(random_tokens(1, 33, 53))


def test_a_meta_built_model_gets_true_rotary_tables_when_allocated():
    args = ModelArgs(dim=32, n_layers=1, n_heads=4, vocab_size=50, multiple_of=16, max_seq_len=16, rope_theta=500.0)
    with torch.device("meta"):
        model = Transformer(args)
    model.to_empty(device="cpu")  # allocates every tensor without values
    fresh = Transformer(args)
    assert torch.equal(model.rope_cos, fresh.rope_cos) and torch.equal(model.rope_sin, fresh.rope_sin)
