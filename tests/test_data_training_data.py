"""data/training_data.py: the data a run asks for (DataSettings); rows dropped while indexing count."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.bad_samples import TooManyBadSamplesError
from data.dataset import PretrainDataset
from data.training_data import DATA_ERRORS, DataSettings, DataSetupError, build_training_data
from support.data_files import make_image, write_config


def caption_table_with_a_malformed_row(folder: Path, good_rows: int) -> Path:
    lines = ["url\tcaption"]
    for i in range(good_rows):
        make_image(folder / f"{i}.png")
        lines.append(f"{i}.png\ta red picture")
    lines.append("x.png\ttoo\tmany fields")  # dropped while indexing
    (folder / "meta.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return write_config(folder / "data.yaml", [str(folder / "meta.tsv")])


def settings_for(config: Path, tokenizer_path: Path, max_bad_fraction: float = 0.01) -> DataSettings:
    return DataSettings(config_path=config, val_config_path=None, tokenizer_path=tokenizer_path, rank=0, world_size=1,
                       batch_size=2, max_words=96, seed=0, on_bad_sample="skip", max_bad_fraction=max_bad_fraction,
                       group_by_length=False, split_epoch=1, pad_to_multiple=1)


def test_rows_dropped_while_indexing_reach_the_engine_by_reason(tmp_path, tokenizer_path):
    config = caption_table_with_a_malformed_row(tmp_path, good_rows=150)
    data = build_training_data(PretrainDataset, settings_for(config, tokenizer_path))
    assert len(data.train_dataset) == 150
    assert data.dropped_at_load == {"malformed_row": 1}


def test_too_many_dropped_rows_stop_the_run_before_training(tmp_path, tokenizer_path):
    config = caption_table_with_a_malformed_row(tmp_path, good_rows=9)  # 1 of 10 rows: above 1%
    with pytest.raises(TooManyBadSamplesError, match="1 of 10 samples were bad.*malformed_row: 1"):
        build_training_data(PretrainDataset, settings_for(config, tokenizer_path))
    build_training_data(PretrainDataset, settings_for(config, tokenizer_path, max_bad_fraction=0.2))


def test_a_meta_file_without_its_header_is_a_data_error_naming_the_file(tmp_path, tokenizer_path):
    make_image(tmp_path / "0.png")
    (tmp_path / "meta.tsv").write_text("0.png\ta red picture\n", encoding="utf-8")
    config = write_config(tmp_path / "data.yaml", [str(tmp_path / "meta.tsv")])
    with pytest.raises(DataSetupError, match="meta.tsv: the header line") as raised:
        build_training_data(PretrainDataset, settings_for(config, tokenizer_path))
    assert isinstance(raised.value, DATA_ERRORS)  # the entry points report it as one line
