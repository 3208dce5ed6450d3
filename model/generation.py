"""Batched sampling with a KV cache: the decoding loop, apart from any particular model.

Prompts of different lengths sit left-aligned in one [B, total_len] buffer. Decoding starts at
the shortest prompt's end; a row whose prompt is longer keeps its own tokens there (they are fed,
not sampled), so every row sees its positions in order and the KV cache stays consistent. Each
row ends at its own end-of-sequence token; the loop stops when every row has ended.
"""

from __future__ import annotations

from typing import Callable, Sequence

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


def generate_tokens(step: StepFn, prompts: Sequence[Sequence[int]], max_gen_len: int, max_len: int,
                    eos_id: int, temperature: float, top_p: float, device: torch.device | str) -> list[list[int]]:
    """Each prompt's continuation (at most max_gen_len tokens, cut before its first eos).

    `step` must keep its own KV cache: it is called with consecutive chunks, the first at
    position 0. `max_len` caps prompt plus continuation (the model's max_seq_len).
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
    ended = torch.zeros(len(prompts), dtype=torch.bool, device=device)

    prev_pos = 0
    for cur_pos in range(min(len(p) for p in prompts), total_len):
        logits = step(tokens[:, prev_pos:cur_pos], prev_pos)
        chosen = choose_next_token(logits, temperature, top_p)
        chosen = torch.where(is_prompt[:, cur_pos], tokens[:, cur_pos], chosen)
        tokens[:, cur_pos] = chosen
        ended |= ~is_prompt[:, cur_pos] & (chosen == eos_id)
        prev_pos = cur_pos
        if bool(ended.all()):
            break

    continuations = []
    for row, prompt in enumerate(prompts):
        continuation = tokens[row, len(prompt):len(prompt) + max_gen_len].tolist()
        if eos_id in continuation:
            continuation = continuation[:continuation.index(eos_id)]
        continuations.append(continuation)
    return continuations
