"""A quick look at a run's data before a job starts (`--dry_run`, and the launchers' pre-flight).

Real meta files hold up to 10^8 rows, so nothing here reads a whole table:
- the YAML config is read: a typo in an option, a missing meta file or image folder is a
  DataConfigError naming the YAML file and line;
- each pre-training table's header and first rows are parsed, and its rows counted (estimated from
  the first megabyte when the file is large); each fine-tuning JSON list is parsed whole (it is only
  valid JSON whole) and counted;
- the first SAMPLES entries of each file are read as the dataset reads them and their images opened.
  Some bad ones are normal in a messy data set and are only reported; when none of those images
  opens, the image folder is almost certainly wrong: a ValueError (data/training_data.py makes it
  a DataSetupError, reported as one line).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from data.bad_samples import BadInput
from data.caption_table import detect_separator, read_table_chunks
from data.config import MetaSource, load_data_config
from data.dataset import PretrainDataset, load_json_list
from data.images import load_image, resolve_image_path
from data.records import caption_exchange, record_exchanges, record_image

SAMPLES = 4
COUNT_WHOLE_BYTES = 256 << 20  # larger tables: rows estimated from the first ESTIMATE_BYTES
ESTIMATE_BYTES = 1 << 20


@dataclass
class SourcePreview:
    """What the first entries of one meta file showed."""

    path: Path
    entries: int
    estimated: bool
    """True when `entries` is an estimate (a large table: its rows were not all counted)."""
    images_tried: int = 0
    images_opened: int = 0
    problems: list[str] = field(default_factory=list)
    """The bad entries among the first ones, as 'reason: detail'."""
    ratio: float = 1.0


def preview_data(dataset_class: type, config_path: str | Path, samples: int = SAMPLES) -> list[SourcePreview]:
    """Check the data config `config_path` as read by `dataset_class`; see the module docstring."""
    config = load_data_config(config_path)
    read = _preview_table if issubclass(dataset_class, PretrainDataset) else _preview_records
    previews = [read(source, samples) for source in config.sources]
    for preview in previews:
        if preview.images_tried and not preview.images_opened:
            raise ValueError(
                f"{preview.path}: none of the images of its first {preview.images_tried} entries opens "
                f"({preview.problems[0]}); check the file's image_root in {config_path}"
            )
    return previews


def _count_rows(path: Path) -> tuple[int, bool]:
    """Data rows of a table (lines after the header), counted, or estimated for a large file."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        if size <= COUNT_WHOLE_BYTES:
            return max(sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b"")) - 1, 0), False
        head = stream.read(ESTIMATE_BYTES)
    return int(size / (len(head) / max(head.count(b"\n"), 1))) - 1, True


def _try_image(preview: SourcePreview, name: str, image_root: Path) -> None:
    preview.images_tried += 1
    load_image(resolve_image_path(name, image_root), transform=lambda image: None)
    preview.images_opened += 1


def _preview_table(source: MetaSource, samples: int) -> SourcePreview:
    rows, estimated = _count_rows(source.path)
    preview = SourcePreview(source.path, rows, estimated, ratio=source.ratio)
    chunks = read_table_chunks(source.path, detect_separator(source.path), strict=False, chunk_rows=samples)
    head = next(chunks, None)
    for url, caption in ([] if head is None else zip(head["url"], head["caption"])):
        try:
            caption_exchange(caption)
            _try_image(preview, url, source.image_root)
        except BadInput as bad:
            preview.problems.append(f"{bad.reason}: {bad.detail}")
    return preview


def _preview_records(source: MetaSource, samples: int) -> SourcePreview:
    records = load_json_list(source)
    preview = SourcePreview(source.path, len(records), False, ratio=source.ratio)
    for record in itertools.islice(records, samples):
        try:
            record_exchanges(record, source.turns, source.keep_image_token)
            image = record_image(record)
            if image is not None:
                _try_image(preview, image, source.image_root)
        except BadInput as bad:
            preview.problems.append(f"{bad.reason}: {bad.detail}")
    return preview
