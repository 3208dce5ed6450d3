"""From a meta file's raw entry to the text to train on: a list of (prompt, answer) exchanges.

- A caption cell of a pre-training table: a string, or a list of strings written as a JSON or
  Python list literal (`["a cat", "a kitten"]`), of which one is drawn at random.
- An Alpaca record `{"instruction", "input", "output"}`: one exchange, the Alpaca prompt built
  from the instruction *string* (the published code passed a one-element tuple by mistake).
- A LLaVA record `{"image", "conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}, ...]}`:
  turns alternate human and gpt; `turns="all"` gives one exchange per answered question,
  `turns="first"` only the first (as the published code). "<image>" is removed from the text
  unless `keep_image_token`.

Every exchange's prompt is `format_prompt(question)`, follow-up questions included: the model is
always asked the way inference asks it. Every field is type-checked before it is used: a value
of the wrong type (null, a number, a list where text belongs) is a bad sample like any other.
Problems raise `BadInput` with a reason of data.bad_samples.
"""

from __future__ import annotations

import ast
import json
import random
from dataclasses import dataclass
from typing import Any

from data.bad_samples import (
    BAD_CONVERSATION,
    EMPTY_TEXT,
    MISSING_FIELD,
    NO_ANSWER,
    NON_STRING_TEXT,
    WRONG_TYPE,
    BadInput,
)
from model.tokenizer import CAPTION_INSTRUCTION, format_prompt

IMAGE_TOKEN = "<image>"
HUMAN_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")
_TEMPLATE_BYTES = len(format_prompt("").encode("utf-8"))  # what the Alpaca template adds to each exchange


@dataclass(frozen=True)
class Exchange:
    """A prompt (already in the Alpaca template) and the answer the model learns to give."""

    prompt: str
    answer: str


def caption_exchange(cell: str, rng: random.Random | None = None) -> Exchange:
    """The captioning exchange for one table cell; a list cell yields one of its captions at random."""
    caption = _pick_caption(cell, rng or random)
    if not caption.strip():
        raise BadInput(EMPTY_TEXT, "the caption is empty")
    return Exchange(prompt=format_prompt(CAPTION_INSTRUCTION), answer=caption)


def _pick_caption(cell: str, rng: random.Random) -> str:
    captions = _as_list(cell)
    if captions is None:
        return cell
    if not captions:
        raise BadInput(EMPTY_TEXT, "the caption list is empty")
    if not all(isinstance(caption, str) for caption in captions):
        raise BadInput(NON_STRING_TEXT, f"the caption list holds a non-string: {cell[:200]!r}")
    return rng.choice(captions)


def _as_list(cell: str) -> list | None:
    """The list a cell spells as a JSON or Python literal, else None (the cell is one caption)."""
    text = cell.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            continue
        return value if isinstance(value, list) else None
    return None


def record_exchanges(record: Any, turns: str = "all", keep_image_token: bool = False) -> list[Exchange]:
    """The exchanges of a fine-tuning record, Alpaca or LLaVA style (see the module docstring)."""
    if not isinstance(record, dict):
        raise BadInput(WRONG_TYPE, f"a record must be a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        return _conversation_exchanges(record["conversations"], turns, keep_image_token)
    if "instruction" in record and "output" in record:
        return [_alpaca_exchange(record)]
    raise BadInput(
        MISSING_FIELD,
        f"a record needs `conversations` (LLaVA) or `instruction` and `output` (Alpaca); it has {sorted(record)}",
    )


def record_image(record: dict) -> str | None:
    """The record's image path as written (None for a text-only record)."""
    if record.get("image") is None:  # absent or null: a text-only record
        return None
    image = _text(record, "image", "`image`")
    if not image.strip():
        raise BadInput(MISSING_FIELD, "`image` is empty: it must be a file name")
    return image


def _text(container: dict, key: str, name: str) -> str:
    """container[key], which must be a string (the caller made sure the key is there)."""
    value = container[key]
    if not isinstance(value, str):
        raise BadInput(NON_STRING_TEXT, f"{name} is {_kind(value)}, not a string")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({value!r:.60})"


def _alpaca_exchange(record: dict) -> Exchange:
    instruction, output = _text(record, "instruction", "`instruction`"), _text(record, "output", "`output`")
    # `input` may be absent or null (no input), as in the published files.
    input_text = _text(record, "input", "`input`") if record.get("input") is not None else None
    if not instruction.strip():
        raise BadInput(EMPTY_TEXT, "`instruction` is empty")
    if not output.strip():
        raise BadInput(NO_ANSWER, "`output` is empty")
    return Exchange(prompt=format_prompt(instruction, input_text), answer=output)


def _conversation_exchanges(conversation: Any, turns: str, keep_image_token: bool) -> list[Exchange]:
    if not isinstance(conversation, list):
        raise BadInput(WRONG_TYPE, f"`conversations` must be a list of turns, got {_kind(conversation)}")
    used = conversation[:2] if turns == "first" else conversation
    texts = [_turn_text(index, turn, expect_human=index % 2 == 0) for index, turn in enumerate(used)]
    if not keep_image_token:
        texts = [_without_image_token(text) for text in texts]
    # Pairs (question, answer); a trailing unanswered question has nothing to learn from.
    pairs = list(zip(texts[0::2], texts[1::2]))
    if not pairs:
        raise BadInput(NO_ANSWER, "the conversation has no answer")
    exchanges = []
    for number, (question, answer) in enumerate(pairs, start=1):
        if not question.strip():
            raise BadInput(EMPTY_TEXT, f"question {number} is empty")
        if not answer.strip():
            raise BadInput(NO_ANSWER, f"answer {number} is empty")
        exchanges.append(Exchange(prompt=format_prompt(question), answer=answer))
    return exchanges


def _without_image_token(text: str) -> str:
    """LLaVA writes "<image>\\n" before or after the first question; drop it and the blank it leaves."""
    return text.replace(IMAGE_TOKEN, "").strip() if IMAGE_TOKEN in text else text


def _turn_text(index: int, turn: Any, expect_human: bool) -> str:
    if not isinstance(turn, dict):
        raise BadInput(WRONG_TYPE, f"turn {index} must be a JSON object, got {_kind(turn)}")
    if "from" not in turn or "value" not in turn:
        raise BadInput(MISSING_FIELD, f"turn {index} needs `from` and `value`, got {turn!r:.200}")
    roles = HUMAN_ROLES if expect_human else ASSISTANT_ROLES
    if not isinstance(turn["from"], str) or turn["from"] not in roles:
        raise BadInput(
            BAD_CONVERSATION,
            f"turn {index} is from {turn['from']!r}; turns must alternate {HUMAN_ROLES[0]} and {ASSISTANT_ROLES[0]}, "
            f"starting with {HUMAN_ROLES[0]}",
        )
    return _text(turn, "value", f"turn {index}'s value")


def record_text_bytes(record: Any, turns: str = "all") -> int:
    """A cheap length estimate: UTF-8 bytes of the record's text (0 for a malformed record).

    Used to group samples of similar length; it tolerates anything, since bad records are
    only judged (and counted) when drawn.
    """
    if not isinstance(record, dict):
        return 0
    conversation = record.get("conversations")
    if isinstance(conversation, list):
        turns_used = conversation[:2] if turns == "first" else conversation
        texts = [turn.get("value") for turn in turns_used if isinstance(turn, dict)]
        exchanges = (len(texts) + 1) // 2
    else:
        texts = [record.get("instruction"), record.get("input"), record.get("output")]
        exchanges = 1
    text_bytes = sum(len(text.encode("utf-8")) for text in texts if isinstance(text, str))
    return text_bytes + exchanges * _TEMPLATE_BYTES
