"""ImageBindLLM: the adapter arithmetic, the loss, text-only samples, trainability, generation."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from model.generation import generate_tokens
from model.llama import Transformer
from model.files.build import meta_llama_keys
from support.tiny_models import all_logits, random_images, random_tokens, tiny_model

SEQ = 10


# -- an independent computation of the published arithmetic, straight from the state dict -----------

def naive_rmsnorm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def naive_linear(sd, module, name, x):
    """x W^T (+ b) (+ x A^T B^T) for `module.name`, from the tensors present in sd."""
    y = x @ sd[f"{module}.{name}.weight"].T
    if f"{module}.{name}.bias" in sd:
        y = y + sd[f"{module}.{name}.bias"]
    if f"{module}.lora_{name}_l1.weight" in sd:
        y = y + (x @ sd[f"{module}.lora_{name}_l1.weight"].T) @ sd[f"{module}.lora_{name}_l2.weight"].T
    return y


def naive_rotary(x, theta):
    """Meta's formula: consecutive pairs as complex numbers, times exp(i * position * theta^(-2j/D))."""
    seq, head_dim = x.shape[1], x.shape[-1]
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    rotation = torch.polar(torch.ones(seq, head_dim // 2), torch.outer(torch.arange(seq).float(), freqs))
    return torch.view_as_real(torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2)) * rotation[None, :, None, :]).flatten(3)


def naive_bridge(sd, fused):
    """[B, E] -> [B, 1, dim]: image_bind_proj, then three residual RMSNorm + SwiGLU blocks."""
    x = fused[:, None, :] @ sd["image_bind_proj.weight"].T + sd["image_bind_proj.bias"]
    for block in (1, 2, 3):
        h = naive_rmsnorm(x, sd[f"image_bind_norm_{block}.weight"], 1e-6)
        x = x + (F.silu(h @ sd[f"image_bind_f1_{block}.weight"].T) * (h @ sd[f"image_bind_f3_{block}.weight"].T)) \
            @ sd[f"image_bind_f2_{block}.weight"].T
    return x


def naive_visual_prefixes(sd, embeddings, adapter_layers):
    """The reference's forward_visual for one modality of weight 1, then + prefix_query per layer."""
    x = naive_bridge(sd, embeddings / embeddings.norm(dim=-1, keepdim=True) * (1 / (1 + 1e-6)))
    return [x + sd["prefix_query.weight"][layer] for layer in range(adapter_layers)]


def naive_logits(sd, args, tokens, prefixes):
    """Full softmax attention with an explicit causal mask; the adapter term added per head before wo."""
    batch, seq = tokens.shape
    heads, kv_heads, head_dim = args.n_heads, args.kv_heads, args.head_dim
    rep = heads // kv_heads
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    h = sd["llama.tok_embeddings.weight"][tokens]
    for i in range(args.n_layers):
        layer = f"llama.layers.{i}"
        x = naive_rmsnorm(h, sd[f"{layer}.attention_norm.weight"], args.norm_eps)
        q = naive_rotary(naive_linear(sd, f"{layer}.attention", "wq", x).view(batch, seq, heads, head_dim), args.rope_theta)
        k = naive_rotary(naive_linear(sd, f"{layer}.attention", "wk", x).view(batch, seq, kv_heads, head_dim), args.rope_theta)
        v = naive_linear(sd, f"{layer}.attention", "wv", x).view(batch, seq, kv_heads, head_dim)
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bshd,bthd->bhst", q, k) / math.sqrt(head_dim) + mask
        out = torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)
        adapted = i - (args.n_layers - args.adapter_layers)
        if adapted >= 0:
            prefix_v = (prefixes[adapted] @ sd[f"{layer}.attention.wv.weight"].T).view(batch, 1, kv_heads, head_dim)
            gate = torch.tanh(sd[f"{layer}.attention.gate"]).view(1, 1, heads, 1)
            out = out + gate * prefix_v.repeat_interleave(rep, dim=2)
        h = h + naive_linear(sd, f"{layer}.attention", "wo", out.reshape(batch, seq, -1))
        x = naive_rmsnorm(h, sd[f"{layer}.ffn_norm.weight"], args.norm_eps)
        gated = F.silu(naive_linear(sd, f"{layer}.feed_forward", "w1", x)) * naive_linear(sd, f"{layer}.feed_forward", "w3", x)
        h = h + naive_linear(sd, f"{layer}.feed_forward", "w2", gated)
    return naive_rmsnorm(h, sd["llama.norm.weight"], args.norm_eps) @ sd["llama.output.weight"].T


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_logits_and_loss_equal_an_independent_computation(phase):
    model = tiny_model(phase).eval()
    sd = model.state_dict()
    tokens, images = random_tokens(3, SEQ, 64), random_images(3)
    labels = tokens.clone()
    labels[:, :4] = 0
    labels[1, 6:] = 0
    with torch.no_grad():
        embeddings = model.image_bind({"vision": images})["vision"]
        expected = naive_logits(sd, model.llama.args, tokens, naive_visual_prefixes(sd, embeddings, 2))
        logits = all_logits(model, tokens, images)
        loss = model(tokens, labels, images)
    assert expected.abs().max() > 1
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # mean negative log-likelihood over the positions whose next token is labelled
    log_probs = expected[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    answer = labels[:, 1:] != 0
    torch.testing.assert_close(loss, -log_probs[answer].sum() / answer.sum(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_untrained_adapter_model_computes_the_plain_llama(phase):
    model = tiny_model(phase, randomise=False).eval()  # gates, biases and LoRA as initialised
    plain = Transformer(replace(model.llama.args, w_bias=False, w_lora=False, adapter_layers=0)).eval()
    meta_keys = meta_llama_keys(model.llama.args)
    plain.load_state_dict({k: v for k, v in model.llama.state_dict().items() if k in meta_keys}, strict=True)
    tokens = random_tokens(2, SEQ, 64)
    with torch.no_grad():
        torch.testing.assert_close(all_logits(model, tokens, random_images(2)), plain(tokens), rtol=0, atol=1e-6)


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_gradients_reach_exactly_the_trainable_tensors(phase):
    model = tiny_model(phase).train()
    tokens = random_tokens(2, SEQ, 64)
    labels = tokens.clone()
    labels[:, :3] = 0
    model(tokens, labels, random_images(2)).backward()
    trainable = set(model.trainable_parameters())
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable
    assert all(model.get_parameter(name).grad.abs().sum() > 0 for name in trainable)


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_batch_without_answer_tokens_gives_zero_loss_with_a_graph(phase):
    model = tiny_model(phase).train()
    tokens = random_tokens(2, SEQ, 64)
    loss = model(tokens, torch.zeros_like(tokens), random_images(2))
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None for p in model.trainable_parameters().values())


def test_text_only_samples_see_the_zero_image_and_skip_the_encoder():
    model = tiny_model("finetune").eval()
    tokens = random_tokens(3, SEQ, 64)
    labels = tokens.clone()
    images = random_images(3)
    has_image = torch.tensor([True, False, True])
    as_reference = images.clone()
    as_reference[1] = 0  # the reference feeds text-only samples an all-zero image
    batch_sizes = []
    model.image_bind.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0]["vision"].shape[0]))
    with torch.no_grad():
        expected = model(tokens, labels, as_reference)
        batch_sizes.clear()
        first = model(tokens, labels, images, has_image)
        second = model(tokens, labels, images, has_image)
        embeddings = model.encode("vision", images)
        from_embeddings = model(tokens, labels, embeddings, has_image)
    torch.testing.assert_close(first, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(first, second) and torch.equal(first, from_embeddings)
    assert batch_sizes == [1, 2, 2, 3]  # zero image once, then only the samples with an image


def test_loading_weights_forgets_the_zero_image_embedding():
    model = tiny_model("pretrain").eval()
    before = model.zero_image_embedding((3, 224, 224), torch.device("cpu")).clone()
    other = tiny_model("pretrain", seed=1)
    torch.manual_seed(1)
    for p in other.image_bind.parameters():
        torch.nn.init.normal_(p)
    model.load_state_dict(other.state_dict())
    after = model.zero_image_embedding((3, 224, 224), torch.device("cpu"))
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, model.encode("vision", torch.zeros(1, 3, 224, 224)), rtol=0, atol=0)


def test_forward_visual_fuses_modalities_as_the_reference():
    model = tiny_model("pretrain").eval()
    gen = torch.Generator().manual_seed(0)
    image, audio = torch.randn(2, 3, 224, 224, generator=gen), torch.randn(2, 1, 128, 204, generator=gen)
    with torch.no_grad():
        got = model.forward_visual({"Image": [image, 0.7], "Audio": [audio, 0.2]})
        emb = model.image_bind({"vision": image, "audio": audio})
        unit = {m: e / e.norm(dim=-1, keepdim=True) for m, e in emb.items()}
        expected = naive_bridge(model.state_dict(), unit["vision"] * (0.7 / 0.900001) + unit["audio"] * (0.2 / 0.900001))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_frozen_imagebind_stays_in_eval_mode():
    model = tiny_model("pretrain").train()
    assert model.training and model.llama.training
    assert not any(module.training for module in model.image_bind.modules())


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_trainable_and_released_tensors_are_float32_and_the_rest_frozen_dtype(phase):
    model = tiny_model(phase, frozen_dtype=torch.bfloat16)
    trainable = model.trainable_parameters()
    released = model.state_dict_released()
    for name, param in model.named_parameters():
        assert param.requires_grad == (name in trainable), name
        # The released layout is what checkpoints ship: never rounded, trained in this phase or not.
        expected_dtype = torch.float32 if name in trainable or name in released else torch.bfloat16
        assert param.dtype == expected_dtype, name
    assert any(name not in trainable for name in released)  # the other phase's tensors are checked too
    tokens = random_tokens(2, SEQ, 64)
    loss = model(tokens, tokens, random_images(2), torch.tensor([True, False]))  # autocast to bf16 on the CPU
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_phase_decides_bias_and_lora():
    pretrain = tiny_model("pretrain", randomise=False, w_bias=True).llama.args
    finetune = tiny_model("finetune", randomise=False).llama.args
    assert (pretrain.w_bias, pretrain.w_lora, pretrain.adapter_layers) == (False, False, 2)
    assert (finetune.w_bias, finetune.w_lora, finetune.adapter_layers) == (True, True, 2)
    with pytest.raises(ValueError, match="pretrain, finetune"):
        tiny_model("train", randomise=False)


# -- generation ------------------------------------------------------------------------------------

def counting_step(vocab: int, calls: list):
    """A stand-in model whose next token is the last one plus 1."""
    def step(chunk: torch.Tensor, start_pos: int) -> torch.Tensor:
        calls.append((start_pos, chunk.shape[1]))
        return F.one_hot((chunk[:, -1] + 1) % vocab, vocab).float()
    return step


def test_each_prompt_stops_at_its_own_eos():
    calls = []
    prompts = [[1, 2], [5], [3, 4, 5, 6]]
    out = generate_tokens(counting_step(20, calls), prompts, max_gen_len=50, max_len=64, eos_id=9,
                          temperature=0.0, top_p=0.75, device="cpu")
    assert out == [[3, 4, 5, 6, 7, 8], [6, 7, 8], [7, 8]]
    # positions are fed in order, each once; the loop stops when the last row reaches eos (position 8)
    assert calls == [(0, 1)] + [(pos, 1) for pos in range(1, 8)]


def test_generation_is_capped_by_max_gen_len_and_max_seq_len():
    prompts = [[1, 2], [3]]
    assert generate_tokens(counting_step(99, []), prompts, 3, 64, 0, 0.0, 0.75, "cpu") == [[3, 4, 5], [4, 5, 6]]
    assert generate_tokens(counting_step(99, []), prompts, 10, 5, 0, 0.0, 0.75, "cpu") == [[3, 4, 5], [4, 5, 6, 7]]


def generation_model(tokenizer):
    return tiny_model("finetune", tokenizer=tokenizer).eval()


def test_greedy_generation_with_kv_cache_equals_full_recompute(tokenizer):
    model = generation_model(tokenizer)
    prompts = [[1, 40, 41, 42, 43], [1, 50, 51], [1, 60, 61, 62, 63, 64, 65]]
    image = random_images(1)
    continuations = model.generate_ids({"Image": [image, 1]}, prompts, max_gen_len=8, temperature=0.0)
    assert all(continuations)
    for prompt, continuation in zip(prompts, continuations):
        sequence = torch.tensor([prompt + continuation])
        with torch.no_grad():
            logits = all_logits(model, sequence, image)[0]
        greedy = logits[len(prompt) - 1:-1].argmax(-1).tolist()
        assert greedy == continuation
        assert tokenizer.eos_id not in continuation  # a continuation ends before its eos
        if len(continuation) < 8:  # it stopped at eos
            assert logits[-1].argmax().item() == tokenizer.eos_id


def test_batched_prompts_generate_as_one_at_a_time(tokenizer):
    model = generation_model(tokenizer)
    images = random_images(3)
    prompts = ["a red circle", "Name three colours.", [1, 70, 71, 72, 73, 74, 75, 76, 77]]
    batched = model.generate_ids({"Image": [images, 1]}, prompts, max_gen_len=6, temperature=0.0)
    alone = [model.generate_ids({"Image": [images[i:i + 1], 1]}, [p], max_gen_len=6, temperature=0.0)[0]
             for i, p in enumerate(prompts)]
    assert batched == alone


def test_generate_decodes_and_samples(tokenizer):
    model = generation_model(tokenizer)
    torch.manual_seed(0)
    texts = model.generate(None, ["a red circle", "a green square"], max_gen_len=5, temperature=0.8, top_p=0.9)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
