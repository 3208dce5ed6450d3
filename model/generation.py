"""Batched sampling with a KV cache: the decoding loop, apart from any particular model.

Prompts of different lengths sit left-aligned in one [B, total_len] buffer. Decoding starts at
the shortest prompt's end; a row whose prompt is longer keeps its own tokens there (they are fed,
not sampled), so every row sees its positions in order and the KV cache stays consistent. Each
row ends at its own end-of-sequence token; the loop stops when every row has ended. The loop is a
generator (stream_tokens), so that a chat can show each token as it is decided; generate_tokens
consumes it to the end.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import torch

# (tokens [B, S] at positions start_pos.., start_pos) -> logits [B, vocab] of the last position
StepFn = Callable[[torch.Tensor, int], torch.Tensor]


def sample_top_p(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Sample from the smallest set of tokens whose probability reaches p (nucleus sampling): [B, V] -> [B]."""
    probs_sorted, order = torch.sort(probs, dim=-1, descending=True)
    before = torch.cumsum(probs_sorted, dim=-1) - probs_sorted  # probability mass ranked above each token
    probs_sorted = probs_sorted.masked_fill(before > p, 0.0)
    probs_sorted = probs_sorted / probs_sorted.sum(dim=-1, keepdim=True)
    choice = torch.multinomial(probs_sorted, num_samples=1)
    return torch.gather(order, -1, choice).squeeze(-1)


def choose_next_token(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """[B, V] -> [B]: greedy when temperature is 0, else top-p sampling at that temperature."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 is greedy)")
    if temperature == 0:
        return logits.argmax(dim=-1)
    return sample_top_p(torch.softmax(logits.float() / temperature, dim=-1), top_p)


def stream_tokens(step: StepFn, prompts: Sequence[Sequence[int]], max_gen_len: int, max_len: int,
                  eos_id: int, temperature: float, top_p: float,
                  device: torch.device | str) -> Iterator[list[int | None]]:
    """After each decoding step, the token that each prompt's continuation gained (None: none).

    A row gains nothing while it is still reading its own prompt, once it has chosen its eos (the
    eos itself is not yielded), and past max_gen_len tokens. Collected to the end, the yields give
    generate_tokens' continuations: it is this loop, consumed. `step` must keep its own KV cache:
    it is called with consecutive chunks, the first at position 0. `max_len` caps prompt plus
    continuation (the model's max_seq_len). Closing the iterator stops decoding (a chat's stop).
    """
    if not prompts or min(len(p) for p in prompts) == 0:
        raise ValueError("every prompt needs at least one token (its bos)")
    longest = max(len(p) for p in prompts)
    if longest >= max_len:
        raise ValueError(f"a prompt of {longest} tokens leaves no room under max_seq_len={max_len}")
    total_len = min(max_len, longest + max_gen_len)
    tokens = torch.zeros((len(prompts), total_len), dtype=torch.long, device=device)
    is_prompt = torch.zeros_like(tokens, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        tokens[row, :len(prompt)] = torch.tensor(prompt, dtype=torch.long, device=device)
        is_prompt[row, :len(prompt)] = True
    prompt_lens = [len(p) for p in prompts]
    ended = [False] * len(prompts)

    prev_pos = 0
    for cur_pos in range(min(prompt_lens), total_len):
        logits = step(tokens[:, prev_pos:cur_pos], prev_pos)
        chosen = choose_next_token(logits, temperature, top_p)
        chosen = torch.where(is_prompt[:, cur_pos], tokens[:, cur_pos], chosen)
        tokens[:, cur_pos] = chosen
        prev_pos = cur_pos
        gained: list[int | None] = []
        for row, token in enumerate(chosen.tolist()):  # the step's one wait for the device
            generated = cur_pos >= prompt_lens[row]
            gained.append(token if generated and not ended[row] and token != eos_id
                          and cur_pos < prompt_lens[row] + max_gen_len else None)
            ended[row] = ended[row] or (generated and token == eos_id)
        yield gained
        if all(ended):
            break


def continuations_of(stream: Iterable[Sequence[int | None]], rows: int) -> list[list[int]]:
    """Each row's tokens from a stream_tokens-like iterator, consumed to the end."""
    continuations: list[list[int]] = [[] for _ in range(rows)]
    for gained in stream:
        for continuation, token in zip(continuations, gained):
            if token is not None:
                continuation.append(token)
    return continuations


def generate_tokens(step: StepFn, prompts: Sequence[Sequence[int]], max_gen_len: int, max_len: int,
                    eos_id: int, temperature: float, top_p: float, device: torch.device | str) -> list[list[int]]:
    """Each prompt's continuation (at most max_gen_len tokens, cut before its first eos): stream_tokens to the end."""
    stream = stream_tokens(step, prompts, max_gen_len, max_len, eos_id, temperature, top_p, device)
    return continuations_of(stream, len(prompts))
