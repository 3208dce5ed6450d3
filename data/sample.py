"""What a dataset's `__getitem__` returns for a good sample (a bad one gives data.bad_samples.BadSample)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.tokenizer import IMAGE_SIZE


@dataclass
class Sample:
    """One training example, not yet padded.

    tokens: LongTensor[L], bos + prompt + answer + eos (several prompt/answer pairs for a
        multi-turn conversation), cut to max_words.
    labels: LongTensor[L], equal to tokens on answer tokens (eos included) and 0 ("no loss") on
        prompt tokens; not shifted (the model shifts).
    image: FloatTensor[3, 224, 224], the transformed image; all zeros when has_image is False.
    """

    tokens: torch.Tensor
    labels: torch.Tensor
    image: torch.Tensor
    has_image: bool


def blank_image() -> torch.Tensor:
    """What text-only samples carry in place of an image (the reference feeds ImageBind zeros too)."""
    return torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)
