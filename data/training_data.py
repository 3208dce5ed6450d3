"""The data side of a training run, assembled from what the run asks for (engine/data_source.py's DataRequest).

Both entry points use it with their own dataset class: image-caption tables for pre-training,
instruction records for fine-tuning. Everything else is shared: the YAML configs, the tokenizer,
the transforms (random crops for training, a centre crop for held-out data), the batch sampler
(sharded by rank, resumable, optionally length-grouped and cut into sub-epochs) and the collate
function that drops and counts bad samples.

    request = run.data_request()                               # the engine's DataRequest
    run.train(build_training_data(PretrainDataset, request))   # main_pretrain.py
"""

from __future__ import annotations

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

# The data errors an entry point reports as one line (see engine/run.py).
DATA_ERRORS: tuple[type[BaseException], ...] = (BadSampleError, TooManyBadSamplesError, DataConfigError)

DatasetClass = type[PretrainDataset] | type[FinetuneDataset]


class DataRequest(Protocol):
    """What the run asks for (engine/data_source.py's DataRequest documents each field)."""

    config_path: Path
    val_config_path: Path | None
    tokenizer_path: Path
    rank: int
    world_size: int
    batch_size: int
    max_words: int
    seed: int
    on_bad_sample: str
    max_bad_fraction: float
    group_by_length: bool
    split_epoch: int
    pad_to_multiple: int


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


def _dataset(dataset_class: DatasetClass, config_path: Path, tokenizer: Tokenizer, transform: Callable,
             request: DataRequest):
    return dataset_class(load_data_config(config_path), tokenizer, transform, request.max_words,
                         on_bad_sample=request.on_bad_sample, seed=request.seed)


def _sampler(dataset, request: DataRequest, group_by_length: bool, split_epoch: int) -> DistributedBatchSampler:
    return DistributedBatchSampler.for_dataset(
        dataset, request.batch_size, group_by_length=group_by_length, split_epoch=split_epoch,
        num_replicas=request.world_size, rank=request.rank, seed=request.seed,
    )


def build_training_data(dataset_class: DatasetClass, request: DataRequest) -> TrainingData:
    """Datasets, samplers and the collate function of the run that made `request`."""
    tokenizer = Tokenizer(request.tokenizer_path)
    train = _dataset(dataset_class, request.config_path, tokenizer, train_transform(), request)
    # Rows dropped while indexing (malformed lines) never reach a batch: judge them here, against
    # everything the meta files held, and let the engine log them with every epoch.
    check_bad_fraction(train.load_skipped, len(train) + sum(train.load_skipped.values()), request.max_bad_fraction,
                       min_seen=0)
    parts = TrainingData(
        train_dataset=train,
        train_sampler=_sampler(train, request, request.group_by_length, request.split_epoch),
        collate_fn=functools.partial(collate_samples, pad_to_multiple=request.pad_to_multiple),
        check_bad_fraction=functools.partial(check_bad_fraction, max_fraction=request.max_bad_fraction),
        dropped_at_load=dict(train.load_skipped),
    )
    if request.val_config_path is not None:
        parts.val_dataset = _dataset(dataset_class, request.val_config_path, tokenizer, eval_transform(), request)
        parts.val_sampler = _sampler(parts.val_dataset, request, group_by_length=False, split_epoch=1)
    return parts
