"""Samples -> a training batch, padded to the batch's longest sequence, bad samples dropped and counted.

The batch (the engine's contract):
    tokens    LongTensor[B, S]  padded with 0
    labels    LongTensor[B, S]  padded with 0 ("no loss")
    images    FloatTensor[B, 3, 224, 224]  zeros where has_image is False
    has_image BoolTensor[B]
    skipped   dict[str, int]  reason -> number of bad samples dropped from this batch

S is the longest sequence of the batch, rounded up to a multiple of `pad_to_multiple` so that
compiled kernels meet a few shapes only. Since no sample is longer than max_words, S never
exceeds max_words rounded up to that multiple. A batch whose samples were all bad has B = 0
(and S = 0); its `skipped` still counts them.

Use as `DataLoader(..., collate_fn=functools.partial(collate_samples, pad_to_multiple=32))`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

from data.bad_samples import BadSample
from data.sample import Sample
from model.tokenizer import IMAGE_SIZE, NO_LOSS_LABEL, PAD_ID


def collate_samples(items: Sequence[Sample | BadSample], pad_to_multiple: int = 1) -> dict:
    """The batch described in the module docstring."""
    if pad_to_multiple < 1:
        raise ValueError(f"pad_to_multiple must be at least 1, got {pad_to_multiple}")
    samples = [item for item in items if isinstance(item, Sample)]
    skipped = dict(Counter(item.reason for item in items if isinstance(item, BadSample)))
    longest = max((len(sample.tokens) for sample in samples), default=0)
    length = -(-longest // pad_to_multiple) * pad_to_multiple  # ceil to the multiple
    tokens = torch.full((len(samples), length), PAD_ID, dtype=torch.int64)
    labels = torch.full((len(samples), length), NO_LOSS_LABEL, dtype=torch.int64)
    for row, sample in enumerate(samples):
        tokens[row, : len(sample.tokens)] = sample.tokens
        labels[row, : len(sample.labels)] = sample.labels
    if samples:
        images = torch.stack([sample.image for sample in samples])
    else:
        images = torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE)
    has_image = torch.tensor([sample.has_image for sample in samples], dtype=torch.bool)
    return {"tokens": tokens, "labels": labels, "images": images, "has_image": has_image, "skipped": skipped}
