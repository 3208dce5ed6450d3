"""The data side of a training run, assembled for the engine (which never imports data/).

Both entry points use it with their own dataset class: image-caption tables for pre-training,
instruction records for fine-tuning. Everything else is shared: the YAML configs, the tokenizer,
the transforms (random crops for training, a centre crop for held-out data), the batch sampler
(sharded by rank, resumable, optionally length-grouped and cut into sub-epochs) and the collate
function that drops and counts bad samples.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from torch.utils.data import Dataset

from data.bad_samples import BadSampleError, TooManyBadSamplesError, check_bad_fraction
from data.collate import collate_samples
from data.config import DataConfigError, load_data_config
from data.dataset import FinetuneDataset, PretrainDataset
from data.sampler import DistributedBatchSampler
from data.transforms import eval_transform, train_transform
from model.tokenizer import Tokenizer

# The data errors an entry point reports as one line (see engine/entry.py).
DATA_ERRORS: tuple[type[BaseException], ...] = (BadSampleError, TooManyBadSamplesError, DataConfigError)

DatasetClass = type[PretrainDataset] | type[FinetuneDataset]


class RunPlace(Protocol):
    """What the data side needs to know of the run (the engine's DataRequest has these fields)."""

    tokenizer_path: Path
    rank: int
    world_size: int


@dataclass
class TrainingData:
    """Datasets, batch samplers and the collate function of a run (the engine's DataParts)."""

    train_dataset: Dataset
    train_sampler: DistributedBatchSampler
    collate_fn: Callable[[list[Any]], dict]
    check_bad_fraction: Callable[..., None]
    dropped_at_load: dict[str, int]
    """Meta-file entries dropped while indexing, by reason (they never reach a batch)."""
    val_dataset: Dataset | None = None
    val_sampler: DistributedBatchSampler | None = None


def _dataset(dataset_class: DatasetClass, config_path: str, tokenizer: Tokenizer, transform: Callable,
             args: argparse.Namespace):
    return dataset_class(load_data_config(config_path), tokenizer, transform, args.max_words,
                         on_bad_sample=args.on_bad_sample, seed=args.seed)


def _sampler(dataset, args: argparse.Namespace, request: RunPlace, group_by_length: bool,
             split_epoch: int) -> DistributedBatchSampler:
    return DistributedBatchSampler.for_dataset(
        dataset, args.batch_size, group_by_length=group_by_length, split_epoch=split_epoch,
        num_replicas=request.world_size, rank=request.rank, seed=args.seed,
    )


def build_training_data(dataset_class: DatasetClass, args: argparse.Namespace, request: RunPlace) -> TrainingData:
    """Datasets, samplers and the collate function for `args` (see engine/data_source.py); an entry
    point hands `functools.partial(build_training_data, its dataset class)` to the engine."""
    tokenizer = Tokenizer(request.tokenizer_path)
    train = _dataset(dataset_class, args.data_config, tokenizer, train_transform(), args)
    # Rows dropped while indexing (malformed lines) never reach a batch: judge them here, against
    # everything the meta files held, and let the engine log them with every epoch.
    check_bad_fraction(train.load_skipped, len(train) + sum(train.load_skipped.values()), args.max_bad_fraction,
                       min_seen=0)
    parts = TrainingData(
        train_dataset=train,
        train_sampler=_sampler(train, args, request, args.group_by_length, getattr(args, "split_epoch", 1)),
        collate_fn=functools.partial(collate_samples, pad_to_multiple=args.pad_to_multiple),
        check_bad_fraction=functools.partial(check_bad_fraction, max_fraction=args.max_bad_fraction),
        dropped_at_load=dict(train.load_skipped),
    )
    if args.val_data_config is not None:
        parts.val_dataset = _dataset(dataset_class, args.val_data_config, tokenizer, eval_transform(), args)
        parts.val_sampler = _sampler(parts.val_dataset, args, request, group_by_length=False, split_epoch=1)
    return parts

