import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.bad_samples import (
    EMPTY_TEXT,
    MALFORMED_ROW,
    MISSING_FIELD,
    MISSING_IMAGE,
    NON_STRING_TEXT,
    UNREADABLE_IMAGE,
    BadSample,
    BadSampleError,
)
from data.config import DataConfig, DataConfigError, MetaSource, load_data_config
from data.dataset import PretrainDataset
from data.sample import Sample
from data.transforms import eval_transform, train_transform
from model.tokenizer import CAPTION_INSTRUCTION, format_prompt
from support.data_files import make_image, published_tokens_and_labels, write_config, write_table

PROMPT = format_prompt(CAPTION_INSTRUCTION)


def dataset_for(config: DataConfig, tokenizer, max_words: int = 256, **kwargs) -> PretrainDataset:
    return PretrainDataset(config, tokenizer, eval_transform(), max_words=max_words, **kwargs)


def table_config(folder: Path, rows: list[dict]) -> DataConfig:
    """A config made in code, with one tab-separated meta file of `rows`."""
    return DataConfig(folder / "x.yaml", [MetaSource(write_table(folder / "m.tsv", rows))])


def test_tsv_plain_list_and_csv_mapping_with_image_root(tmp_path: Path, tokenizer):
    red = make_image(tmp_path / "tsv_images" / "red.png", (255, 0, 0))
    make_image(tmp_path / "coco" / "train" / "blue.png", (0, 0, 255))
    tsv = write_table(tmp_path / "tsv_images" / "cc.tsv", [
        {"url": "red.png", "caption": "a red circle"},            # relative to the meta file's folder
        {"url": str(red), "caption": "a red circle, again"},     # absolute
    ])
    csv = write_table(tmp_path / "coco.csv", [{"url": "train/blue.png", "caption": 'a "blue" square, 雪'}], sep=",")
    config = load_data_config(write_config(tmp_path / "data.yaml", [
        str(tsv), {"path": str(csv), "image_root": str(tmp_path / "coco"), "ratio": 0.5},
    ]))
    dataset = dataset_for(config, tokenizer)

    assert len(dataset) == 3 and dataset.source_sizes == [2, 1] and dataset.source_ratios == [1.0, 0.5]
    captions = ["a red circle", "a red circle, again", 'a "blue" square, 雪']
    colours = [(255, 0, 0), (255, 0, 0), (0, 0, 255)]
    for index, (caption, colour) in enumerate(zip(captions, colours)):
        sample = dataset[index]
        assert isinstance(sample, Sample) and sample.has_image
        tokens, labels = published_tokens_and_labels(tokenizer, PROMPT, caption, max_words=256)
        assert torch.equal(sample.tokens, tokens) and torch.equal(sample.labels, labels)
        assert tokenizer.decode(sample.labels[sample.labels != 0].tolist()) == caption
        expected_image = eval_transform()(Image.new("RGB", (40, 30), colour))
        assert torch.equal(sample.image, expected_image)
    assert dataset.length_estimates().tolist() == [len(c.encode()) + len(PROMPT) for c in captions]
    assert "cc.tsv: 2 rows" in dataset.describe()


def test_truncation_to_max_words(tmp_path: Path, tokenizer):
    make_image(tmp_path / "a.png")
    caption = "a red circle " * 20
    max_words = len(tokenizer.encode(PROMPT, bos=True, eos=False)) + 5  # room for 5 answer tokens
    config = table_config(tmp_path, [{"url": "a.png", "caption": caption}])
    sample = dataset_for(config, tokenizer, max_words=max_words)[0]
    tokens, labels = published_tokens_and_labels(tokenizer, PROMPT, caption, max_words=max_words)
    assert len(sample.tokens) == max_words and (sample.labels != 0).sum() == 5
    assert torch.equal(sample.tokens, tokens) and torch.equal(sample.labels, labels)


@pytest.mark.parametrize("cell", ['["a red circle", "a green square"]', "['a red circle', \"a green square\"]"])
def test_caption_list_draws_one_caption(tmp_path: Path, tokenizer, cell: str):
    make_image(tmp_path / "a.png")
    config = table_config(tmp_path, [{"url": "a.png", "caption": cell}])
    dataset = dataset_for(config, tokenizer)
    random.seed(0)
    answers = set()
    for _ in range(20):
        labels = dataset[0].labels
        answers.add(tokenizer.decode(labels[labels != 0].tolist()))
    assert answers == {"a red circle", "a green square"}


BAD_ROWS = [
    ({"url": "absent.png", "caption": "a red circle"}, MISSING_IMAGE),
    ({"url": "garbage.jpg", "caption": "a red circle"}, UNREADABLE_IMAGE),
    ({"url": "truncated.jpg", "caption": "a red circle"}, UNREADABLE_IMAGE),
    ({"url": "ok.png", "caption": "   "}, EMPTY_TEXT),
    ({"url": "ok.png", "caption": "[]"}, EMPTY_TEXT),
    ({"url": "ok.png", "caption": '["a", 3]'}, NON_STRING_TEXT),
    ({"url": "", "caption": "a red circle"}, MISSING_FIELD),
]


@pytest.fixture
def bad_table(tmp_path: Path) -> Path:
    make_image(tmp_path / "ok.png")
    (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
    full = make_image(tmp_path / "full.jpg", size=(64, 64)).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(full[: len(full) // 2])
    rows = [row for row, _ in BAD_ROWS] + [{"url": "ok.png", "caption": "a good one"}]
    path = write_table(tmp_path / "bad.tsv", rows)
    # A row with a tab too many, appended by hand (pandas would quote it).
    with open(path, "a") as stream:
        stream.write("ok.png\ttoo\tmany\n")
    return path


def test_every_bad_row_is_skipped_with_its_reason(bad_table: Path, tokenizer):
    dataset = dataset_for(DataConfig(bad_table.parent / "x.yaml", [MetaSource(bad_table)]), tokenizer)
    assert len(dataset) == len(BAD_ROWS) + 1
    assert dataset.load_skipped == {MALFORMED_ROW: 1}
    for index, (_, reason) in enumerate(BAD_ROWS):
        item = dataset[index]
        assert isinstance(item, BadSample), index
        assert item.reason == reason
        assert item.where == f"{bad_table} row {index} (0-based, header not counted)"
    assert isinstance(dataset[len(BAD_ROWS)], Sample)


def test_first_bad_samples_are_logged_with_file_and_row(bad_table: Path, tokenizer, caplog):
    dataset = dataset_for(DataConfig(bad_table.parent / "x.yaml", [MetaSource(bad_table)]), tokenizer)
    with caplog.at_level("WARNING", logger="data.bad_samples"):
        for index in range(len(BAD_ROWS)):
            dataset[index]
    messages = [record.getMessage() for record in caplog.records if record.name == "data.bad_samples"]
    assert len(messages) == dataset.policy.max_logged
    assert f"{bad_table} row 0 (0-based, header not counted): missing_image" in messages[0]
    assert "counted, not logged" in messages[-1]


@pytest.mark.parametrize("index", range(len(BAD_ROWS)))
def test_error_policy_raises_naming_file_row_and_reason(bad_table: Path, tokenizer, index: int):
    (bad_table.parent / "fixed.tsv").write_text(bad_table.read_text().replace("ok.png\ttoo\tmany\n", ""))
    config = DataConfig(bad_table.parent / "x.yaml", [MetaSource(bad_table.parent / "fixed.tsv")])
    dataset = dataset_for(config, tokenizer, on_bad_sample="error")
    with pytest.raises(BadSampleError, match=rf"fixed\.tsv row {index} .*: {BAD_ROWS[index][1]}: "):
        dataset[index]


def test_error_policy_stops_at_a_malformed_row(bad_table: Path, tokenizer):
    with pytest.raises(BadSampleError, match=r"bad\.tsv.*line 10"):
        dataset_for(DataConfig(bad_table.parent / "x.yaml", [MetaSource(bad_table)]), tokenizer, on_bad_sample="error")


def test_conversation_options_on_a_caption_table_are_an_error(tmp_path: Path, tokenizer):
    table = write_table(tmp_path / "m.tsv", [{"url": "a.png", "caption": "x"}])
    config = DataConfig(tmp_path / "x.yaml", [MetaSource(table, turns="first", declared_at="x.yaml line 2")])
    with pytest.raises(DataConfigError, match="x.yaml line 2: turns and keep_image_token apply to conversation"):
        dataset_for(config, tokenizer)


def test_an_empty_table_is_an_error(tmp_path: Path, tokenizer):
    table = tmp_path / "empty.tsv"
    table.write_text("url\tcaption\n")
    with pytest.raises(DataConfigError, match="empty.tsv holds no samples"):
        dataset_for(DataConfig(tmp_path / "x.yaml", [MetaSource(table)]), tokenizer)


def test_length_estimates_are_cheap_arrays(tmp_path: Path, tokenizer):
    rows = [{"url": f"{i}.png", "caption": "x" * i} for i in range(1, 6)]
    config = table_config(tmp_path, rows)
    estimates = dataset_for(config, tokenizer).length_estimates()
    assert estimates.dtype == np.int64
    assert np.diff(estimates).tolist() == [1, 1, 1, 1]


def test_set_epoch_makes_random_choices_a_function_of_seed_epoch_and_index(tmp_path: Path, tokenizer):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    image.save(tmp_path / "noise.png")
    cell = '["a red circle", "a green square", "a blue triangle", "a yellow star"]'
    config = table_config(tmp_path, [{"url": "noise.png", "caption": cell}] * 2)

    def draw(epoch: int, index: int, seed: int = 7) -> Sample:
        dataset = PretrainDataset(config, tokenizer, train_transform(), max_words=256, seed=seed)
        dataset.set_epoch(epoch)
        torch.manual_seed(epoch * 100 + index)  # whatever the process's generator holds
        return dataset[index]

    state = torch.random.get_rng_state()
    first = draw(3, 0)
    again = draw(3, 0)
    assert torch.equal(first.image, again.image) and torch.equal(first.tokens, again.tokens)
    others = [draw(epoch, index, seed) for epoch, index, seed in ((4, 0, 7), (3, 1, 7), (3, 0, 8))]
    assert all(not torch.equal(first.image, other.image) for other in others)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    dataset = PretrainDataset(config, tokenizer, train_transform(), max_words=256)
    dataset.set_epoch(0)
    dataset[0]
    assert torch.equal(torch.random.get_rng_state(), before)  # the process's generator is left alone
    torch.random.set_rng_state(state)
