"""data/training_data.py: the data side a run hands to the engine; rows dropped while indexing count."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from data.bad_samples import TooManyBadSamplesError
from data.dataset import PretrainDataset
from data.training_data import build_training_data
from engine.arguments import build_parser
from tests.test_data_helpers import make_image, write_config


@dataclass(frozen=True)
class Place:
    tokenizer_path: Path
    rank: int = 0
    world_size: int = 1


def caption_table_with_a_malformed_row(folder: Path, good_rows: int) -> Path:
    lines = ["url\tcaption"]
    for i in range(good_rows):
        make_image(folder / f"{i}.png")
        lines.append(f"{i}.png\ta red picture")
    lines.append("x.png\ttoo\tmany fields")  # dropped while indexing
    (folder / "meta.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return write_config(folder / "data.yaml", [str(folder / "meta.tsv")])


def args_for(config: Path, *extra: str):
    return build_parser("pretrain").parse_args(["--llama_path", ".", "--data_config", str(config), "--batch_size", "2",
                                                *extra])


def test_rows_dropped_while_indexing_reach_the_engine_by_reason(tmp_path, tokenizer_path):
    config = caption_table_with_a_malformed_row(tmp_path, good_rows=150)
    data = build_training_data(PretrainDataset, args_for(config), Place(tokenizer_path))
    assert len(data.train_dataset) == 150
    assert data.dropped_at_load == {"malformed_row": 1}


def test_too_many_dropped_rows_stop_the_run_before_training(tmp_path, tokenizer_path):
    config = caption_table_with_a_malformed_row(tmp_path, good_rows=9)  # 1 of 10 rows: above 1%
    with pytest.raises(TooManyBadSamplesError, match="1 of 10 samples were bad.*malformed_row: 1"):
        build_training_data(PretrainDataset, args_for(config), Place(tokenizer_path))
    build_training_data(PretrainDataset, args_for(config, "--max_bad_fraction", "0.2"), Place(tokenizer_path))
