"""The conventions shared by data/ and model/: the SentencePiece tokenizer, the prompts, a batch's constants.

This is the one module of model/ that data/ may import (see DESIGN.md), so it imports nothing
else of the project, and every constant both sides use is defined here once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from sentencepiece import SentencePieceProcessor, SentencePieceTrainer

# The Alpaca templates, verbatim: the released checkpoints were trained on exactly these strings.
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)

# Pre-training asks every image for its caption with this instruction.
CAPTION_INSTRUCTION = "Generate caption of this image"

# LLaMA's SentencePiece ids of the special pieces (train_tokenizer makes the same ones).
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2

# LLaMA's tokenizer has no pad piece: batches pad tokens with 0, and label 0 means "no loss" (the
# published convention), so padding never counts in the loss.
PAD_ID = 0
NO_LOSS_LABEL = 0

# ImageBind's image input is 3 x IMAGE_SIZE x IMAGE_SIZE; its image-like positional embeddings are
# built for this size (depth and thermal too).
IMAGE_SIZE = 224


def format_prompt(instruction: str, input: str | None = None) -> str:
    """The Alpaca prompt; an empty or missing `input` selects the template without `### Input:`."""
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a string, got {type(instruction).__name__}: {instruction!r}")
    if input is None or input == "":
        return PROMPT_NO_INPUT.format_map({"instruction": instruction})
    return PROMPT_WITH_INPUT.format_map({"instruction": instruction, "input": input})


class Tokenizer:
    """LLaMA's SentencePiece tokenizer (`LLAMA_DIR/tokenizer.model`)."""

    def __init__(self, model_path: str | os.PathLike):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise FileNotFoundError(
                f"SentencePiece tokenizer not found: {model_path} "
                "(LLaMA ships it as LLAMA_DIR/tokenizer.model, beside the model folders)"
            )
        self.model_path = model_path
        self.sp_model = SentencePieceProcessor(model_file=str(model_path))
        self.n_words: int = self.sp_model.vocab_size()
        self.bos_id: int = self.sp_model.bos_id()
        self.eos_id: int = self.sp_model.eos_id()
        # LLaMA's model defines no pad piece (pad_id is -1); batches pad with PAD_ID instead.
        self.pad_id: int = self.sp_model.pad_id()

    def encode(self, text: str, bos: bool, eos: bool) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"can only encode a string, got {type(text).__name__}: {text!r}")
        ids = self.sp_model.encode(text)
        if bos:
            ids = [self.bos_id] + ids
        if eos:
            ids = ids + [self.eos_id]
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.sp_model.decode(ids)


def train_tokenizer(texts: Iterable[str], output_path: str | os.PathLike, vocab_size: int = 512) -> Tokenizer:
    """Train a small SentencePiece model with LLaMA's special ids (unk 0, bos 1, eos 2, no pad).

    For tests and the demo, which may download nothing. Byte fallback keeps every string
    encodable, whatever characters the training text lacked.
    """
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "wb") as model_file:
        SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=model_file,
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            character_coverage=1.0,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            pad_id=-1,
            num_threads=1,
            minloglevel=2,
        )
    return Tokenizer(output_path)
