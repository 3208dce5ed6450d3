"""A conversation as one prompt: the earlier exchanges written as fine-tuning wrote them, newest kept.

Fine-tuning reads a LLaVA conversation as one token sequence (data/prompt_tokens.py):

    bos  Alpaca(q1) a1 eos  Alpaca(q2) a2 eos  ...  Alpaca(qn) an eos

where Alpaca(q) is the Alpaca template around the question (model/tokenizer.format_prompt) and each
prompt and answer are encoded together. A chat asks the model in that same layout: the earlier
exchanges exactly so (the same function builds them), then the new question's template, whose
"### Response:" the model completes. A first question is then exactly the prompt that
`model.generate` builds from `format_prompt(question)`.

When the conversation and the longest answer asked for do not fit in the model's context
(max_seq_len), the oldest exchanges are left out, one at a time, until they do: the newest turns
are the ones the next answer depends on most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from data.prompt_tokens import tokenize_exchanges
from data.records import Exchange
from model.tokenizer import Tokenizer, format_prompt


class ContextTooShort(ValueError):
    """The question alone leaves no room for an answer in the model's context."""


@dataclass(frozen=True)
class ChatPrompt:
    """The prompt's token ids, how many earlier exchanges it left out, and the answer's room."""

    ids: list[int]
    dropped: int  # the oldest exchanges left out to fit the context
    answer_room: int  # at most this many answer tokens fit after the prompt


def conversation_ids(tokenizer: Tokenizer, history: Sequence[tuple[str, str]], question: str) -> list[int]:
    """bos, the earlier (question, answer) exchanges as fine-tuning wrote them, then the new question's prompt."""
    exchanges = [Exchange(prompt=format_prompt(q), answer=a) for q, a in history]
    earlier = tokenize_exchanges(tokenizer, exchanges, max_words=2**62)[0].tolist() if exchanges else []
    return earlier + tokenizer.encode(format_prompt(question), bos=not earlier, eos=False)


def fit_conversation(tokenizer: Tokenizer, history: Sequence[tuple[str, str]], question: str,
                     max_seq_len: int, max_gen_len: int) -> ChatPrompt:
    """The newest exchanges that leave room for a max_gen_len-token answer (see the module docstring).

    Without any earlier exchange a question may leave less room than max_gen_len (the answer is then
    shorter); one that leaves none raises ContextTooShort.
    """
    for dropped in range(len(history) + 1):
        ids = conversation_ids(tokenizer, history[dropped:], question)
        if len(ids) + max_gen_len <= max_seq_len:
            return ChatPrompt(ids, dropped, max_gen_len)
    if len(ids) >= max_seq_len:
        raise ContextTooShort(f"the question alone is {len(ids)} tokens; the model's context holds {max_seq_len}: "
                              "ask a shorter question")
    return ChatPrompt(ids, len(history), max_seq_len - len(ids))
