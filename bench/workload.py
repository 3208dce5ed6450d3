"""Issue 6's standard workload, as the samples a dataset would give and the batches training sees.

    pre-training  every sample has a 224 x 224 image; token lengths uniform in [48, 96]
    fine-tuning   token lengths uniform in [64, 512]; every second sample has an image, the others
                  are text-only (a zero image, as the data side gives them)

A sample is bos, random token ids, eos. Its first half is prompt (label 0) and the rest answer:
a choice of this benchmark, which decides only how many rows reach the vocabulary head. Images
are random pixels (nothing decoded: the benchmark times the step and the loader's wait for it).
Everything is a function of the seed and the sample's index. Batches are made by data/'s
collate function and, for the timed steps, drawn by its batch sampler, so padding and length
grouping are those of training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from data.collate import collate_samples
from data.sample import Sample, blank_image
from data.sampler import DistributedBatchSampler
from model.tokenizer import BOS_ID, EOS_ID, IMAGE_SIZE, NO_LOSS_LABEL

FIRST_WORD_ID = EOS_ID + 1  # the ids below are pad (and unk), bos and eos


@dataclass(frozen=True)
class Workload:
    """One phase's samples: token lengths uniform in [min_tokens, max_tokens], every
    `image_every`-th sample with an image."""

    min_tokens: int
    max_tokens: int
    image_every: int
    bucket: int
    """The --pad_to_multiple that --compile uses for this phase (a few sequence lengths)."""

    def lengths(self, count: int, seed: int) -> np.ndarray:
        """`count` token lengths drawn uniformly."""
        return np.random.default_rng(seed).integers(self.min_tokens, self.max_tokens + 1, size=count)

    def padded_lengths(self, pad_to_multiple: int) -> list[int]:
        """Every length a batch can be padded to, ascending."""
        return sorted({math.ceil(n / pad_to_multiple) * pad_to_multiple
                       for n in range(self.min_tokens, self.max_tokens + 1)})


WORKLOADS = {
    "pretrain": Workload(min_tokens=48, max_tokens=96, image_every=1, bucket=32),
    "finetune": Workload(min_tokens=64, max_tokens=512, image_every=2, bucket=128),
}


class SyntheticSamples(Dataset):
    """Samples of `workload` with the given token lengths; sample i depends on (seed, i) only."""

    def __init__(self, workload: Workload, lengths: np.ndarray, vocab_size: int, seed: int):
        self.workload = workload
        self.lengths = np.asarray(lengths)
        self.vocab_size = vocab_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Sample:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        length = int(self.lengths[index])
        words = torch.randint(FIRST_WORD_ID, self.vocab_size, (length - 2,), generator=generator)
        tokens = torch.cat([torch.tensor([BOS_ID]), words, torch.tensor([EOS_ID])])
        labels = tokens.clone()
        labels[: length // 2] = NO_LOSS_LABEL  # the prompt half: no loss
        has_image = index % self.workload.image_every == 0
        image = torch.randn(3, IMAGE_SIZE, IMAGE_SIZE, generator=generator) if has_image else blank_image()
        return Sample(tokens, labels, image, has_image)


def batch_collator(pad_to_multiple: int) -> Callable[[list[Sample]], dict]:
    """data/'s collate function, padding to the batch's longest rounded up to the multiple."""
    return functools.partial(collate_samples, pad_to_multiple=pad_to_multiple)


def warmup_batches(workload: Workload, batch_size: int, steps: int, vocab_size: int, seed: int,
                   pad_to_multiple: int) -> list[dict]:
    """`steps` batches, the first of which reach every padded length, longest first (as many as fit).

    A compiled step makes its graphs at each new shape: meeting every length, and (the samples
    being shuffled) differing numbers of images, before the timed steps keeps compilation out of
    the timing.
    """
    lengths = workload.lengths(batch_size * steps, seed)
    order = np.random.default_rng(seed).permutation(batch_size * steps).reshape(steps, batch_size)
    for step, padded in enumerate(reversed(workload.padded_lengths(pad_to_multiple)[-steps:])):
        longest = min(padded, workload.max_tokens)
        lengths[order[step]] = np.minimum(lengths[order[step]], longest)
        lengths[order[step, 0]] = longest  # this batch pads to `padded` exactly
    samples = SyntheticSamples(workload, lengths, vocab_size, seed)
    collate = batch_collator(pad_to_multiple)
    return [collate([samples[int(i)] for i in indices]) for indices in order]


def timed_samples(workload: Workload, batch_size: int, steps: int, vocab_size: int, seed: int,
                  group_by_length: bool) -> tuple[SyntheticSamples, DistributedBatchSampler]:
    """The timed steps' samples and the training batch sampler over them (shuffled, optionally
    length-grouped): `steps` batches of `batch_size`."""
    samples = SyntheticSamples(workload, workload.lengths(batch_size * steps, seed), vocab_size, seed)
    sampler = DistributedBatchSampler([len(samples)], batch_size, lengths=samples.lengths,
                                      group_by_length=group_by_length, seed=seed)
    return samples, sampler
