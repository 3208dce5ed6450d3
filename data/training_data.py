"""The data side of a training run, assembled from what the run asks for (DataSettings).

Both entry points use it with their own dataset class: image-caption tables for pre-training,
instruction records for fine-tuning. Everything else is shared: the YAML configs, the tokenizer,
the transforms (random crops for training, a centre crop for held-out data), the batch sampler
(sharded by rank, resumable, optionally length-grouped and cut into sub-epochs) and the collate
function that drops and counts bad samples.

    settings = DataSettings(**run.data_settings())             # main_pretrain.py
    run.train(build_training_data(PretrainDataset, settings))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from data.bad_samples import BadSampleError, TooManyBadSamplesError, check_bad_fraction
from data.collate import collate_samples
from data.config import DataConfigError, load_data_config
from data.dataset import FinetuneDataset, PretrainDataset
from data.preflight import SourcePreview, preview_data
from data.sampler import DistributedBatchSampler, check_split_epoch
from data.transforms import eval_transform, train_transform
from model.tokenizer import Tokenizer


class DataSetupError(ValueError):
    """The data cannot be set up as asked (a meta file without its header, fewer samples than a
    batch, ...); the message says which file or setting."""


# The data errors an entry point reports as one line (see engine/run.py).
DATA_ERRORS: tuple[type[BaseException], ...] = (BadSampleError, TooManyBadSamplesError, DataConfigError,
                                                DataSetupError)

DatasetClass = type[PretrainDataset] | type[FinetuneDataset]


@dataclass(frozen=True)
class DataSettings:
    """What a run needs of its data; the run fills it in (engine/run.py: TrainingRun.data_settings)."""

    config_path: Path
    """The YAML data config (META: meta files)."""
    val_config_path: Path | None
    """The held-out data's YAML config; None: no validation loss."""
    tokenizer_path: Path
    """The tokenizer the model was built with."""
    rank: int
    world_size: int
    batch_size: int
    """Samples per batch on each rank."""
    max_words: int
    seed: int
    on_bad_sample: str
    """"skip" (drop and count) or "error" (stop at the first)."""
    max_bad_fraction: float
    group_by_length: bool
    split_epoch: int
    """Each pass over the data is cut into this many epochs."""
    pad_to_multiple: int
    preview_only: bool = False
    """--dry_run: only look at the data (data/preflight.py) and return a DataPreview."""


@dataclass
class DataPreview:
    """What a dry run learns of the data without building it (data/preflight.py)."""

    train: list[SourcePreview]
    val: list[SourcePreview] | None


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
             settings: DataSettings):
    return dataset_class(load_data_config(config_path), tokenizer, transform, settings.max_words,
                         on_bad_sample=settings.on_bad_sample, seed=settings.seed)


def _sampler(dataset, settings: DataSettings, group_by_length: bool, split_epoch: int) -> DistributedBatchSampler:
    return DistributedBatchSampler.for_dataset(
        dataset, settings.batch_size, group_by_length=group_by_length, split_epoch=split_epoch,
        num_replicas=settings.world_size, rank=settings.rank, seed=settings.seed,
    )


def build_training_data(dataset_class: DatasetClass, settings: DataSettings) -> TrainingData | DataPreview:
    """Datasets, samplers and the collate function the settings describe (only a look at the data
    under `preview_only`).

    The readers and the sampler check what they are given with ValueError, whose message says what
    to change: it becomes a DataSetupError, which the entry points report as one line.
    """
    try:
        preview = _preview(dataset_class, settings)  # a real run makes the dry run's checks first
        return preview if settings.preview_only else _build(dataset_class, settings)
    except (DataConfigError, BadSampleError):
        raise
    except ValueError as error:
        raise DataSetupError(f"the training data cannot be set up: {error}") from error


def _preview(dataset_class: DatasetClass, settings: DataSettings) -> DataPreview:
    """The configs read, the first entries of each meta file opened, the sub-epochs checked against
    the counted rows: what a dry run reports, and the mistakes a real run finds before anything slow."""
    val = settings.val_config_path
    preview = DataPreview(preview_data(dataset_class, settings.config_path),
                          preview_data(dataset_class, val) if val is not None else None)
    if not any(source.estimated for source in preview.train):
        check_split_epoch([source.entries for source in preview.train], [source.ratio for source in preview.train],
                          settings.split_epoch)
    return preview


def _build(dataset_class: DatasetClass, settings: DataSettings) -> TrainingData:
    tokenizer = Tokenizer(settings.tokenizer_path)
    train = _dataset(dataset_class, settings.config_path, tokenizer, train_transform(), settings)
    # Rows dropped while indexing (malformed lines) never reach a batch: judge them here, against
    # everything the meta files held, and let the engine log them with every epoch.
    check_bad_fraction(train.load_skipped, len(train) + sum(train.load_skipped.values()), settings.max_bad_fraction,
                       min_seen=0)
    parts = TrainingData(
        train_dataset=train,
        train_sampler=_sampler(train, settings, settings.group_by_length, settings.split_epoch),
        collate_fn=functools.partial(collate_samples, pad_to_multiple=settings.pad_to_multiple),
        check_bad_fraction=functools.partial(check_bad_fraction, max_fraction=settings.max_bad_fraction),
        dropped_at_load=dict(train.load_skipped),
    )
    if settings.val_config_path is not None:
        parts.val_dataset = _dataset(dataset_class, settings.val_config_path, tokenizer, eval_transform(), settings)
        parts.val_sampler = _sampler(parts.val_dataset, settings, group_by_length=False, split_epoch=1)
    return parts
