"""The two training datasets: image-caption tables (pre-training) and instruction records (fine-tuning).

Both read the meta files of a `DataConfig` once, into compact arrays, and build a sample when
asked: text first (cheap, and it may be bad), then the image. `__getitem__` returns a `Sample`,
or under the default bad-sample policy a `BadSample` marker that the collate function drops and
counts; see data/bad_samples.py.

To read a meta format of your own for pre-training, adapt `PretrainDataset`: `_read_source`
indexes one meta file, `_sample` turns one of its rows into a `Sample`, `_text_bytes` gives
cheap length estimates for length-grouped batching.
"""

from __future__ import annotations

import json
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.bad_samples import MALFORMED_ROW, BadInput, BadSample, BadSamplePolicy
from data.caption_table import CaptionTable, read_caption_table
from data.config import DataConfig, DataConfigError, MetaSource
from data.images import load_image, resolve_image_path
from data.packed_strings import PackedStrings, PackedStringsBuilder
from data.prompt_tokens import tokenize_exchanges
from data.records import Exchange, caption_exchange, record_exchanges, record_image, record_text_bytes
from data.sample import Sample, blank_image
from data.train_crop import TrainCrop
from model.tokenizer import CAPTION_INSTRUCTION, Tokenizer, format_prompt

logger = logging.getLogger(__name__)

# What turns an image into a tensor: a deterministic PIL transform (eval_transform), or the random
# training crop, which reads the file itself and draws its box from the sample's generator.
Transform = Callable[[Image.Image], torch.Tensor] | TrainCrop


class _MetaFileDataset(Dataset, ABC):
    """What both datasets share: several meta files behind one index, bad samples per the policy.

    Global index i belongs to the first source whose cumulative size exceeds i, in config order.
    """

    # How messages name one entry of a meta file.
    item_name = "row"
    item_note = "(0-based, header not counted)"

    def __init__(
        self,
        config: DataConfig,
        tokenizer: Tokenizer,
        transform: Transform,
        max_words: int,
        on_bad_sample: str = "skip",
        seed: int = 0,
    ):
        if max_words < 1:
            raise ValueError(f"max_words must be at least 1, got {max_words}")
        self.config = config
        self.tokenizer = tokenizer
        self.transform = transform
        self.max_words = max_words
        self.policy = BadSamplePolicy(on_bad_sample)
        self.seed = seed
        self.epoch: int | None = None  # set by set_epoch
        self.load_skipped: dict[str, int] = {}
        """Entries dropped while reading the meta files (reason -> count); they never reach a batch."""
        self._sources = [self._read_source(source) for source in config.sources]
        self.source_sizes = [len(items) for items in self._sources]
        for source, size in zip(config.sources, self.source_sizes):
            if size == 0:
                raise DataConfigError(f"{source.origin}: {source.path} holds no samples")
        self._starts = np.cumsum([0] + self.source_sizes)
        logger.info("%s", self.describe())

    @property
    def source_ratios(self) -> list[float]:
        return [source.ratio for source in self.config.sources]

    def __len__(self) -> int:
        return int(self._starts[-1])

    def set_epoch(self, epoch: int) -> None:
        """From now on, a sample's random choices (its crop, a caption drawn from a list) are a
        function of (seed, epoch, index), whichever worker makes it: a run resumed mid-epoch then
        sees the samples an uninterrupted one would. Before the first call they follow the
        process's random generators, which the DataLoader seeds per worker."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> Sample | BadSample:
        source_id, item = self._locate(index)
        rng, generator = self._randomness(index)
        try:
            return self._sample(self.config.sources[source_id], self._sources[source_id], item, rng, generator)
        except BadInput as bad:
            return self.policy.handle(bad, where=self.where(index))

    def where(self, index: int) -> str:
        """Which meta file and entry sample `index` comes from, for messages."""
        source_id, item = self._locate(index)
        return f"{self.config.sources[source_id].path} {self.item_name} {item} {self.item_note}"

    def length_estimates(self) -> np.ndarray:
        """int64[len(self)]: UTF-8 bytes of each sample's prompt and answer, a proxy for its token count."""
        return np.concatenate([
            self._text_bytes(source, items) for source, items in zip(self.config.sources, self._sources)
        ])

    def describe(self) -> str:
        """A few lines for the log: every meta file, its size, ratio and image folder."""
        lines = [f"{type(self).__name__}: {len(self):,} samples from {len(self._sources)} meta files"]
        for source, size in zip(self.config.sources, self.source_sizes):
            lines.append(
                f"  {source.path}: {size:,} {self.item_name}s, ratio {source.ratio:g}, images under {source.image_root}"
            )
        if self.load_skipped:
            lines.append(f"  dropped while reading: {self.load_skipped}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range for {len(self)} samples")
        source_id = int(np.searchsorted(self._starts, index, side="right")) - 1
        return source_id, index - int(self._starts[source_id])

    def _randomness(self, index: int) -> tuple[random.Random | None, torch.Generator | None]:
        """This sample's generators, a Python one (captions) and a torch one (the crop), both seeded
        from (seed, epoch, index) and handed down explicitly: nothing global is seeded, which
        torch.manual_seed would do at a cost of ~5% of a sample. (None, None) before set_epoch:
        the process's generators."""
        if self.epoch is None:
            return None, None
        sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        return random.Random(sample_seed), torch.Generator().manual_seed(sample_seed)

    def _make_sample(self, exchanges: list[Exchange], image_path: Path | None,
                     generator: torch.Generator | None) -> Sample:
        tokens, labels = tokenize_exchanges(self.tokenizer, exchanges, self.max_words)
        if image_path is None:
            image = blank_image()
        elif isinstance(self.transform, TrainCrop):
            image = self.transform.read(image_path, generator)
        else:
            image = load_image(image_path, self.transform)
        return Sample(tokens=tokens, labels=labels, image=image, has_image=image_path is not None)

    # Each dataset defines how it reads one meta file and makes one sample of it.
    @abstractmethod
    def _read_source(self, source: MetaSource) -> Any:
        """Index one meta file: anything with a len() that _sample and _text_bytes understand."""

    @abstractmethod
    def _sample(self, source: MetaSource, items: Any, item: int, rng: random.Random | None,
                generator: torch.Generator | None) -> Sample:
        """Sample `item` of one meta file, drawing any random choice from `rng` (None: the module
        `random`) and the image's crop from `generator` (None: torch's global one); raises
        BadInput when it is bad."""

    @abstractmethod
    def _text_bytes(self, source: MetaSource, items: Any) -> np.ndarray:
        """int64 length estimates of one meta file's samples (UTF-8 bytes of prompt and answer)."""


class PretrainDataset(_MetaFileDataset):
    """Image-caption pairs from tables with the columns url and caption (tab- or comma-separated).

    Each sample asks for the image's caption ("Generate caption of this image" in the Alpaca
    template) and learns the caption; a caption cell holding a list gives one of them at random.
    """

    def _read_source(self, source: MetaSource) -> CaptionTable:
        if source.turns != "all" or source.keep_image_token:
            raise DataConfigError(
                f"{source.origin}: turns and keep_image_token apply to conversation (JSON) files, "
                f"not to the caption table {source.path}; remove them"
            )
        table = read_caption_table(source.path, strict=self.policy.raises)
        if table.malformed_lines:
            self.load_skipped[MALFORMED_ROW] = self.load_skipped.get(MALFORMED_ROW, 0) + len(table.malformed_lines)
        return table

    def _sample(self, source: MetaSource, table: CaptionTable, row: int, rng: random.Random | None,
                generator: torch.Generator | None) -> Sample:
        exchange = caption_exchange(table.captions[row], rng)
        return self._make_sample([exchange], resolve_image_path(table.urls[row], source.image_root), generator)

    def _text_bytes(self, source: MetaSource, table: CaptionTable) -> np.ndarray:
        return table.captions.byte_lengths() + len(format_prompt(CAPTION_INSTRUCTION))


class FinetuneDataset(_MetaFileDataset):
    """Instruction records from JSON lists: Alpaca style (text only) and LLaVA style (conversations).

    A record with `image` is image-grounded (the path resolves against the file's image_root);
    one without is text-only: has_image False and an all-zero image.
    """

    item_name = "record"
    item_note = "(0-based)"

    def _read_source(self, source: MetaSource) -> RecordList:
        records = load_json_list(source)
        # Kept as packed JSON text, not as Python dicts: forked workers share it (see packed_strings.py).
        packed = PackedStringsBuilder()
        packed.extend([json.dumps(record, ensure_ascii=False) for record in records])
        text_bytes = np.array([record_text_bytes(record, source.turns) for record in records], dtype=np.int64)
        return RecordList(packed.build(), text_bytes)

    def _sample(self, source: MetaSource, records: RecordList, index: int, rng: random.Random | None,
                generator: torch.Generator | None) -> Sample:
        record = json.loads(records.json[index])
        exchanges = record_exchanges(record, source.turns, source.keep_image_token)
        image = record_image(record)
        image_path = None if image is None else resolve_image_path(image, source.image_root)
        return self._make_sample(exchanges, image_path, generator)

    def _text_bytes(self, source: MetaSource, records: RecordList) -> np.ndarray:
        return records.text_bytes


@dataclass
class RecordList:
    """One JSON meta file: every record as JSON text, and each one's length estimate."""

    json: PackedStrings
    text_bytes: np.ndarray

    def __len__(self) -> int:
        return len(self.json)


def load_json_list(source: MetaSource) -> list:
    try:
        with open(source.path, encoding="utf-8") as stream:
            records = json.load(stream)
    except json.JSONDecodeError as error:
        raise DataConfigError(
            f"{source.path} line {error.lineno} column {error.colno}: not valid JSON ({error.msg}); "
            f"listed at {source.origin}"
        ) from error
    if not isinstance(records, list):
        raise DataConfigError(
            f"{source.path}: a fine-tuning meta file must hold a JSON list of records, got a {type(records).__name__}; "
            f"listed at {source.origin}"
        )
    return records
