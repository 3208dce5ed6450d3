"""The interface between a run and its data: what the run asks for, what it gets, its DataLoaders.

The engine does not import data/, and data/ never reads the engine's flags. Once the run has set
up (it knows the process's rank and the tokenizer's path), `TrainingRun.data_settings()` says what
data it needs, in the words of data/training_data.py's DataSettings; the entry point hands that to
data/, which returns the datasets, the batch sampler and the collate function (they have
`DataParts`' fields), and passes them to `TrainingRun.train`. The engine makes one DataLoader per epoch of them
(`epoch_loader`).

A batch is the dict the data side collates (see the shared interfaces in the project brief):
tokens [B, S], labels [B, S], images [B, 3, H, W] or [B, E], has_image [B], skipped {reason: n}.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset


class ResumableBatchSampler(Protocol):
    """A per-rank batch sampler whose epochs are reproducible and resumable mid-epoch."""

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int:
        """This rank's batches in the current epoch, counting those a restored state skips."""

    def __iter__(self) -> Iterator[list[int]]:
        """The current epoch's batches of dataset indices, after those a restored state skips."""

    @property
    def start_batch(self) -> int:
        """How many of the current epoch's batches a restored state skips."""

    def state_dict(self, batches_done: int) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


BadFractionCheck = Callable[..., None]
"""check(skipped: {reason: count}, seen: int, min_seen=...) raises when too many samples were bad."""


class DataParts(Protocol):
    """The data side of a run, built by the entry point from data/ (data/training_data.py)."""

    train_dataset: Dataset
    train_sampler: ResumableBatchSampler
    collate_fn: Callable[[list[Any]], dict]
    check_bad_fraction: BadFractionCheck
    dropped_at_load: dict[str, int]
    """Meta-file entries dropped while the training data was indexed, by reason; logged every epoch."""
    val_dataset: Dataset | None
    val_sampler: ResumableBatchSampler | None


BATCH_TENSORS = ("tokens", "labels", "images", "has_image")


def batch_to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(tokens, labels, images, has_image), tokens and images on `device` (copies from pinned memory
    do not block the host). labels and has_image stay where the collate made them, on the CPU: the
    model chooses answer positions and image rows from them without waiting for the device, which
    a mask on the GPU would make it do (see model/adapter.py)."""
    tokens, labels, images, has_image = (batch[key] for key in BATCH_TENSORS)
    return tokens.to(device, non_blocking=True), labels, images.to(device, non_blocking=True), has_image


def epoch_loader(dataset: Dataset, sampler: ResumableBatchSampler, collate_fn: Callable, epoch: int,
                 num_workers: int, pin_memory: bool, seed: int) -> DataLoader:
    """A DataLoader over `epoch`'s batches (those after a restored position).

    The dataset learns the epoch first when it can (`set_epoch`): its random augmentation is then
    a function of (seed, epoch, index), whichever worker builds a sample, which is what makes a
    resumed run repeat an uninterrupted one. Workers start afresh each epoch so that they see it.
    The loader draws its workers' base seed from its own generator, never from the global one
    that the checkpoint restores.
    """
    sampler.set_epoch(epoch)
    set_dataset_epoch = getattr(dataset, "set_epoch", None)
    if set_dataset_epoch is not None:
        set_dataset_epoch(epoch)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed + epoch),
    )
