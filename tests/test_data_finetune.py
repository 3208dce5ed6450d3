import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from data.bad_samples import (
    BAD_CONVERSATION,
    EMPTY_TEXT,
    MISSING_FIELD,
    MISSING_IMAGE,
    NO_ANSWER,
    NON_STRING_TEXT,
    WRONG_TYPE,
    BadSample,
    BadSampleError,
)
from data.config import DataConfig, DataConfigError, MetaSource, load_data_config
from data.dataset import FinetuneDataset
from data.sample import Sample
from data.transforms import eval_transform
from model.tokenizer import format_prompt
from support.data_files import make_image, published_tokens_and_labels, write_config, write_json

MAX_WORDS = 1024

ALPACA = [
    {"instruction": "Name three colours.", "input": "", "output": "Red, green and blue."},
    {"instruction": "Describe the picture.", "input": "with an input", "output": "A cat on the mat."},
]
LLAVA = {
    "id": "000000033471",
    "image": "000000033471.jpg",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is in the image?"},
        {"from": "gpt", "value": "There is a cat on the mat."},
        {"from": "human", "value": "What colour is it?"},
        {"from": "gpt", "value": "It is red."},
        {"from": "human", "value": "Anything else?"},  # unanswered: nothing to learn from
    ],
}
QUESTIONS = ["What is in the image?", "What colour is it?"]
ANSWERS = ["There is a cat on the mat.", "It is red."]


def dataset_for(tmp_path: Path, tokenizer, records, on_bad_sample: str = "skip", **options) -> FinetuneDataset:
    source = MetaSource(write_json(tmp_path / "records.json", records), image_root=tmp_path / "coco", **options)
    return FinetuneDataset(
        DataConfig(tmp_path / "x.yaml", [source]), tokenizer, eval_transform(), max_words=MAX_WORDS,
        on_bad_sample=on_bad_sample,
    )


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    return make_image(tmp_path / "coco" / "000000033471.jpg", (0, 200, 0))


def label_runs(labels: torch.Tensor) -> list[list[int]]:
    """Maximal runs of labelled (non-zero) positions, as lists of positions."""
    runs: list[list[int]] = []
    for position, label in enumerate(labels.tolist()):
        if label == 0:
            continue
        if runs and runs[-1][-1] == position - 1:
            runs[-1].append(position)
        else:
            runs.append([position])
    return runs


def test_alpaca_prompt_is_built_from_the_instruction_string(tmp_path: Path, tokenizer):
    dataset = dataset_for(tmp_path, tokenizer, ALPACA)
    for index, record in enumerate(ALPACA):
        sample = dataset[index]
        prompt = format_prompt(record["instruction"], record["input"])
        tokens, labels = published_tokens_and_labels(tokenizer, prompt, record["output"], MAX_WORDS)
        assert torch.equal(sample.tokens, tokens) and torch.equal(sample.labels, labels)
        text = tokenizer.decode(sample.tokens.tolist())
        assert record["instruction"] in text and "('" not in text  # the string, not the tuple's repr
        assert not sample.has_image and torch.equal(sample.image, torch.zeros(3, 224, 224))
    # (The tiny test tokenizer folds newlines into spaces.)
    assert "### Input: with an input" in tokenizer.decode(dataset[1].tokens.tolist())


def test_llava_first_turn_is_the_published_sample_without_the_image_token(tmp_path: Path, tokenizer, coco: Path):
    sample = dataset_for(tmp_path, tokenizer, [LLAVA], turns="first")[0]
    tokens, labels = published_tokens_and_labels(tokenizer, format_prompt(QUESTIONS[0]), ANSWERS[0], MAX_WORDS)
    assert torch.equal(sample.tokens, tokens) and torch.equal(sample.labels, labels)
    assert sample.has_image
    with Image.open(coco) as image:
        assert torch.equal(sample.image, eval_transform()(image.convert("RGB")))


def test_keep_image_token_restores_the_published_question(tmp_path: Path, tokenizer, coco: Path):
    sample = dataset_for(tmp_path, tokenizer, [LLAVA], turns="first", keep_image_token=True)[0]
    question = LLAVA["conversations"][0]["value"]
    tokens, labels = published_tokens_and_labels(tokenizer, format_prompt(question), ANSWERS[0], MAX_WORDS)
    assert torch.equal(sample.tokens, tokens) and torch.equal(sample.labels, labels)


def test_all_turns_label_every_answer_and_mask_every_question(tmp_path: Path, tokenizer, coco: Path):
    sample = dataset_for(tmp_path, tokenizer, [LLAVA])[0]  # turns: all is the default
    tokens, labels = sample.tokens, sample.labels
    assert torch.equal(labels[labels != 0], tokens[labels != 0])
    runs = label_runs(labels)
    assert len(runs) == len(ANSWERS)
    for run, answer in zip(runs, ANSWERS):
        assert tokens[run[-1]] == tokenizer.eos_id  # every answer ends with a labelled eos
        assert tokenizer.decode(tokens[run[:-1]].tolist()) == answer
    masked = [tokens[start:run[0]] for start, run in zip([0] + [r[-1] + 1 for r in runs], runs)]
    for question, prompt_tokens in zip(QUESTIONS, masked):
        prompt = tokenizer.encode(format_prompt(question), bos=False, eos=False)
        assert tokenizer.decode(prompt_tokens.tolist()) == tokenizer.decode(prompt)
    assert tokens[0] == tokenizer.bos_id and (tokens == tokenizer.bos_id).sum() == 1
    assert runs[-1][-1] == len(tokens) - 1  # the unanswered last question adds nothing


def test_text_only_conversation_has_no_image(tmp_path: Path, tokenizer):
    record = {"conversations": LLAVA["conversations"][:2]}
    sample = dataset_for(tmp_path, tokenizer, [record])[0]
    assert not sample.has_image and not sample.image.any()


def test_mapping_config_for_json_with_relative_image_root(tmp_path: Path, tokenizer, coco: Path):
    write_json(tmp_path / "llava.json", [LLAVA])
    write_json(tmp_path / "alpaca.json", ALPACA)
    config = load_data_config(write_config(tmp_path / "data.yaml", [
        str(tmp_path / "alpaca.json"), {"path": "llava.json", "image_root": "coco", "turns": "first"},
    ]))
    dataset = FinetuneDataset(config, tokenizer, eval_transform(), max_words=MAX_WORDS)
    assert dataset.source_sizes == [2, 1]
    assert [dataset[index].has_image for index in range(3)] == [False, False, True]
    first, all_turns = (dataset.length_estimates()[2], dataset_for(tmp_path, tokenizer, [LLAVA]).length_estimates()[0])
    assert all_turns > first > 0


BAD_RECORDS = [
    ("not a record", WRONG_TYPE),
    ({"instruction": "Say hi."}, MISSING_FIELD),
    ({"instruction": "Say hi.", "output": 42}, NON_STRING_TEXT),
    ({"instruction": "Say hi.", "input": ["x"], "output": "Hi."}, NON_STRING_TEXT),
    ({"instruction": "  ", "output": "Hi."}, EMPTY_TEXT),
    ({"instruction": "Say hi.", "output": ""}, NO_ANSWER),
    ({"conversations": [{"from": "human", "value": "Hello?"}]}, NO_ANSWER),
    ({"conversations": []}, NO_ANSWER),
    ({"conversations": [{"from": "human", "value": "Hello?"}, {"from": "gpt", "value": " "}]}, NO_ANSWER),
    ({"conversations": "Hello?"}, WRONG_TYPE),
    ({"conversations": ["Hello?", "Hi."]}, WRONG_TYPE),
    ({"conversations": [{"from": "gpt", "value": "Hi."}, {"from": "human", "value": "Hello?"}]}, BAD_CONVERSATION),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "Hi."}]}, MISSING_FIELD),
    ({"conversations": [{"from": "human", "value": None}, {"from": "gpt", "value": "Hi."}]}, NON_STRING_TEXT),
    ({"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "Hi."}]}, EMPTY_TEXT),
    ({"image": 7, "conversations": LLAVA["conversations"]}, NON_STRING_TEXT),
    ({"image": "absent.jpg", "conversations": LLAVA["conversations"]}, MISSING_IMAGE),
]


def test_every_bad_record_is_skipped_with_its_reason(tmp_path: Path, tokenizer):
    dataset = dataset_for(tmp_path, tokenizer, [record for record, _ in BAD_RECORDS] + ALPACA)
    for index, (_, reason) in enumerate(BAD_RECORDS):
        item = dataset[index]
        assert isinstance(item, BadSample) and item.reason == reason, (index, item)
        assert item.where == f"{tmp_path / 'records.json'} record {index} (0-based)"
    assert isinstance(dataset[len(BAD_RECORDS)], Sample)


@pytest.mark.parametrize("index", range(len(BAD_RECORDS)))
def test_error_policy_raises_naming_file_record_and_reason(tmp_path: Path, tokenizer, index: int):
    dataset = dataset_for(tmp_path, tokenizer, [record for record, _ in BAD_RECORDS], on_bad_sample="error")
    with pytest.raises(BadSampleError, match=rf"records\.json record {index} \(0-based\): {BAD_RECORDS[index][1]}: "):
        dataset[index]


# A null and a number in every field of every record kind: a bad sample with its reason, never an exception.
GOOD_ALPACA = {"instruction": "Say hi.", "input": "to a friend", "output": "Hi."}
GOOD_LLAVA = {"id": "1", "image": "cat.png", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                                               {"from": "gpt", "value": "A cat."}]}


def _with(record: dict, path: tuple, value) -> dict:
    """A deep copy of `record` with the field at `path` (keys and list indices) set to `value`."""
    copy = json.loads(json.dumps(record))
    container = copy
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value
    return copy


WRONG_VALUES = [None, 42, ["a list"]]
FIELD_CASES = [
    *[(GOOD_ALPACA, ("instruction",), value, NON_STRING_TEXT) for value in WRONG_VALUES],
    *[(GOOD_ALPACA, ("output",), value, NON_STRING_TEXT) for value in WRONG_VALUES],
    *[(GOOD_ALPACA, ("input",), value, NON_STRING_TEXT) for value in WRONG_VALUES[1:]],  # null input: no input
    *[(GOOD_LLAVA, ("image",), value, NON_STRING_TEXT) for value in WRONG_VALUES[1:]],  # null image: text only
    *[(GOOD_LLAVA, ("conversations",), value, WRONG_TYPE) for value in [None, 42, "text"]],
    *[(GOOD_LLAVA, ("conversations", 0), value, WRONG_TYPE) for value in WRONG_VALUES],
    *[(GOOD_LLAVA, ("conversations", turn, "value"), value, NON_STRING_TEXT)
      for turn in (0, 1) for value in WRONG_VALUES],
    *[(GOOD_LLAVA, ("conversations", turn, "from"), value, BAD_CONVERSATION)
      for turn in (0, 1) for value in WRONG_VALUES],
]


@pytest.mark.parametrize("record, path, value, reason", FIELD_CASES,
                         ids=[f"{'/'.join(map(str, path))}={value!r}" for _, path, value, _ in FIELD_CASES])
def test_a_wrong_type_in_any_field_is_a_bad_sample_counted_by_reason(tmp_path: Path, tokenizer, record, path,
                                                                       value, reason):
    make_image(tmp_path / "coco" / "cat.png")
    dataset = dataset_for(tmp_path, tokenizer, [_with(record, path, value), record])
    item = dataset[0]
    assert isinstance(item, BadSample) and item.reason == reason, item
    assert isinstance(dataset[1], Sample)  # the same record with the right types is fine


def test_null_input_and_null_image_mean_none(tmp_path: Path, tokenizer):
    dataset = dataset_for(tmp_path, tokenizer, [_with(GOOD_ALPACA, ("input",), None),
                                                _with(GOOD_LLAVA, ("image",), None)])
    assert isinstance(dataset[0], Sample) and isinstance(dataset[1], Sample)
    assert not dataset[1].has_image


def test_first_turn_only_ignores_later_malformed_turns(tmp_path: Path, tokenizer):
    record = {"conversations": LLAVA["conversations"][:2] + [{"from": "system", "value": "?"}]}
    assert isinstance(dataset_for(tmp_path, tokenizer, [record], turns="first")[0], Sample)
    assert dataset_for(tmp_path, tokenizer, [record])[0].reason == BAD_CONVERSATION


def test_broken_json_names_the_file_and_line(tmp_path: Path, tokenizer):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": \n]')
    with pytest.raises(DataConfigError, match=r"broken\.json line 4 column 1: not valid JSON"):
        FinetuneDataset(DataConfig(tmp_path / "x.yaml", [MetaSource(path)]), tokenizer, eval_transform(), max_words=8)
    path.write_text('{"instruction": "a", "output": "b"}')
    with pytest.raises(DataConfigError, match=r"broken\.json: a fine-tuning meta file must hold a JSON list"):
        FinetuneDataset(DataConfig(tmp_path / "x.yaml", [MetaSource(path)]), tokenizer, eval_transform(), max_words=8)
