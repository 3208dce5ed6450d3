"""Token ids and labels for a list of exchanges: loss on the answers only, as the published code.

One exchange gives exactly the published sequence: tokens = encode(prompt + answer, bos, eos),
labels = tokens with the first len(encode(prompt, bos)) positions set to 0 ("no loss"). A
multi-turn conversation appends one such sequence per exchange, without a second bos: every
answer is labelled and ends with a labelled eos (so the model learns to stop after each answer),
every prompt is masked. The result is cut to max_words tokens.
"""

from __future__ import annotations

import torch

from data.records import Exchange
from model.tokenizer import NO_LOSS_LABEL, Tokenizer


def tokenize_exchanges(
    tokenizer: Tokenizer, exchanges: list[Exchange], max_words: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, labels), two LongTensor[L] with L <= max_words."""
    tokens: list[int] = []
    labels: list[int] = []
    for index, exchange in enumerate(exchanges):
        first = index == 0
        prompt_ids = tokenizer.encode(exchange.prompt, bos=first, eos=False)
        # Encoded together, as the published code does: the prompt's last piece and the answer's
        # first may merge differently when encoded apart.
        ids = tokenizer.encode(exchange.prompt + exchange.answer, bos=first, eos=True)
        tokens += ids
        labels += [NO_LOSS_LABEL] * len(prompt_ids) + ids[len(prompt_ids):]
        if len(tokens) >= max_words:
            break
    return (
        torch.tensor(tokens[:max_words], dtype=torch.int64),
        torch.tensor(labels[:max_words], dtype=torch.int64),
    )
