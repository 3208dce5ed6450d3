"""One model for every session: answers streamed token by token, one at a time, each stoppable.

The page queues its requests (one at a time on the model; app/page.py); the lock here keeps that
true for any other caller. An answer is streamed as the text of the tokens decided so far (a
SentencePiece piece can change how its neighbours decode, so the whole answer is decoded again at
each token). Stopping is cooperative: stop(session) sets that session's flag and the loop ends at
the next token, keeping what it wrote.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from app.chat_prompt import fit_conversation
from model.adapter import ImageBindLLM
from model.visual_cache import VisualCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """How to choose tokens: temperature 0 is greedy; max_gen_len caps the answer's tokens."""

    temperature: float = 0.1
    top_p: float = 0.75
    max_gen_len: int = 128


@dataclass(frozen=True)
class CacheSettings:
    """The visual cache's mixing for one request (the published app's sliders); None in a request: off."""

    size: int
    temperature: float
    weight: float


@dataclass(frozen=True)
class Reply:
    """The answer so far, and what the page should say about it (the context, a stop)."""

    text: str
    notice: str = ""
    done: bool = False


class ChatEngine:
    """Answers questions about inputs with one loaded model (see the module docstring)."""

    def __init__(self, llm: ImageBindLLM, visual_cache: VisualCache | None = None):
        if llm.tokenizer is None:
            raise ValueError("the chat needs the model's tokenizer")
        self.llm = llm
        self.visual_cache = visual_cache
        self.device = llm.llama.tok_embeddings.weight.device
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}

    @property
    def max_seq_len(self) -> int:
        return self.llm.llama.args.max_seq_len

    def stop(self, session: str) -> bool:
        """Ask the session's answer in progress to end at its next token; False when none is running."""
        event = self._stops.get(session)
        if event is not None:
            event.set()
        return event is not None

    def answer(self, session: str, inputs: Mapping[str, Sequence[Any]] | None, history: Sequence[tuple[str, str]],
               question: str, sampling: Sampling, cache: CacheSettings | None = None) -> Iterator[Reply]:
        """Replies with the answer so far, the last one `done`. `inputs` as ImageBindLLM.generate takes
        them (tensors on any device, moved here); None: no input, the zero image of text-only training."""
        prompt = fit_conversation(self.llm.tokenizer, history, question, self.max_seq_len, sampling.max_gen_len)
        notice = context_notice(prompt.dropped, len(history), self.max_seq_len, prompt.answer_room,
                                sampling.max_gen_len)
        if inputs is not None:
            inputs = {name: [value.to(self.device), weight] for name, (value, weight) in inputs.items()}
        stop = self._stops[session] = threading.Event()
        try:
            with self._lock:
                self.llm.use_visual_cache(self._cache_for(cache))
                stream = self.llm.stream_ids(inputs, [prompt.ids], prompt.answer_room, sampling.temperature,
                                             sampling.top_p)
                ids: list[int] = []
                try:
                    for gained in stream:
                        if gained[0] is not None:
                            ids.append(gained[0])
                            yield Reply(self.llm.tokenizer.decode(ids), notice)
                        if stop.is_set():
                            notice = join(notice, f"Stopped after {len(ids)} token(s).")
                            break
                finally:
                    stream.close()
                    self.llm.use_visual_cache(None)
            yield Reply(self.llm.tokenizer.decode(ids), notice, done=True)
        finally:
            if self._stops.get(session) is stop:
                del self._stops[session]

    def _cache_for(self, settings: CacheSettings | None) -> VisualCache | None:
        if settings is None or self.visual_cache is None:
            return None
        return dataclasses.replace(self.visual_cache, size=int(settings.size), temperature=float(settings.temperature),
                                   weight=float(settings.weight))


def context_notice(dropped: int, exchanges: int, max_seq_len: int, answer_room: int, max_gen_len: int) -> str:
    """What the page says when the conversation did not fit the context; empty when it did."""
    notice = ""
    if dropped:
        kept = exchanges - dropped
        notice = (f"The conversation is longer than the model's context ({max_seq_len} tokens): the oldest "
                  f"{dropped} exchange(s) were left out of the prompt, the newest {kept} kept.")
    if answer_room < max_gen_len:
        notice = join(notice, f"The question leaves room for {answer_room} answer token(s), not {max_gen_len}.")
    return notice


def join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)

