"""Streaming generation: the tokens as they are decided, the same as generate's answer at the end.

A chat shows each token when it is chosen (app/engine.py); the notebook and the evaluation take the
whole answer. Both run one loop (model/generation.stream_tokens), so they cannot drift apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.generation import stream_tokens
from support.tiny_models import random_images, tiny_model


def counting_step(vocab: int):
    """A stand-in model whose next token is the last one plus 1."""
    def step(chunk: torch.Tensor, start_pos: int) -> torch.Tensor:
        return F.one_hot((chunk[:, -1] + 1) % vocab, vocab).float()
    return step


def test_each_step_yields_what_each_row_gained():
    # row 0 generates from position 2, row 1 reads its prompt up to position 3; eos is 7
    steps = list(stream_tokens(counting_step(20), [[1, 2], [3, 4, 5, 6]], max_gen_len=4, max_len=64, eos_id=7,
                               temperature=0.0, top_p=0.75, device="cpu"))
    # row 1's first choice is eos: it gains nothing; row 0 has its four at position 5 and ends at its eos
    assert steps == [[3, None], [4, None], [5, None], [6, None], [None, None]]
    steps = list(stream_tokens(counting_step(20), [[1, 2], [5]], max_gen_len=3, max_len=64, eos_id=0,
                               temperature=0.0, top_p=0.75, device="cpu"))
    assert steps == [[None, 6], [3, 7], [4, 8], [5, None]]  # row 1 stops at max_gen_len, row 0 finishes its three


def test_the_stream_consumed_to_the_end_is_generates_answer(tokenizer):
    model = tiny_model("finetune", tokenizer=tokenizer).eval()
    inputs = {"Image": [random_images(1), 1]}
    prompts = ["a red circle", "Name three colours."]
    for temperature in (0.0, 0.8):
        torch.manual_seed(0)
        steps = list(model.stream_ids(inputs, prompts, max_gen_len=12, temperature=temperature, top_p=0.9))
        torch.manual_seed(0)
        answers = model.generate(inputs, prompts, max_gen_len=12, temperature=temperature, top_p=0.9)
        streamed = [[step[row] for step in steps if step[row] is not None] for row in range(len(prompts))]
        assert [tokenizer.decode(ids) for ids in streamed] == answers
        assert len(steps) > 1 and all(len(step) == len(prompts) for step in steps)


def test_closing_the_stream_stops_decoding(tokenizer):
    model = tiny_model("finetune", tokenizer=tokenizer).eval()
    calls = []
    original = model.llama.last_logits

    def counted(*args, **kwargs):
        calls.append(1)
        logits = original(*args, **kwargs)
        logits[:, tokenizer.eos_id] = float("-inf")  # never ends by itself
        return logits

    model.llama.last_logits = counted
    stream = model.stream_ids(None, ["a red circle"], max_gen_len=40, temperature=0.0)
    first_three = [next(stream) for _ in range(3)]
    stream.close()
    assert len(calls) == 3 and all(step[0] is not None for step in first_three)
    assert len(model.generate_ids(None, ["a red circle"], max_gen_len=40, temperature=0.0)[0]) == 40
