import pytest
import torch

from data.bad_samples import BadSample
from data.collate import collate_samples
from data.sample import Sample, blank_image


def sample(length: int, has_image: bool = True) -> Sample:
    tokens = torch.arange(1, length + 1)
    labels = torch.cat([torch.zeros(length // 2, dtype=torch.int64), tokens[length // 2 :]])
    image = torch.full((3, 224, 224), float(length)) if has_image else blank_image()
    return Sample(tokens=tokens, labels=labels, image=image, has_image=has_image)


def test_pads_to_the_longest_in_the_batch_and_counts_bad_samples():
    items = [sample(5), BadSample("missing_image", "m.tsv row 1"), sample(9, has_image=False),
             BadSample("missing_image", "m.tsv row 3"), BadSample("no_answer", "r.json record 0"), sample(2)]
    batch = collate_samples(items)
    assert set(batch) == {"tokens", "labels", "images", "has_image", "skipped"}
    assert batch["tokens"].shape == (3, 9) and batch["tokens"].dtype == torch.int64
    assert batch["tokens"][0].tolist() == [1, 2, 3, 4, 5, 0, 0, 0, 0]
    assert batch["labels"][0].tolist() == [0, 0, 3, 4, 5, 0, 0, 0, 0]
    assert batch["tokens"][1].tolist() == list(range(1, 10))
    assert batch["tokens"][2].tolist() == [1, 2] + [0] * 7
    assert batch["images"].shape == (3, 3, 224, 224)
    assert batch["images"][0].eq(5).all() and batch["images"][1].eq(0).all()
    assert batch["has_image"].tolist() == [True, False, True]
    assert batch["skipped"] == {"missing_image": 2, "no_answer": 1}


@pytest.mark.parametrize(
    "lengths, multiple, expected", [([5, 9], 8, 16), ([16, 3], 8, 16), ([17], 32, 32), ([5], 1, 5)]
)
def test_pads_up_to_a_multiple(lengths, multiple, expected):
    batch = collate_samples([sample(length) for length in lengths], pad_to_multiple=multiple)
    assert batch["tokens"].shape[1] == batch["labels"].shape[1] == expected


def test_padding_never_exceeds_max_words_rounded_up():
    max_words, multiple = 70, 32
    batch = collate_samples([sample(max_words)], pad_to_multiple=multiple)
    assert batch["tokens"].shape[1] == 96  # 70 rounded up to a multiple of 32


def test_an_all_bad_batch_has_batch_size_zero_and_its_counts():
    batch = collate_samples([BadSample("unreadable_image", "m.tsv row 0")] * 2, pad_to_multiple=8)
    assert batch["tokens"].shape == (0, 0) and batch["labels"].shape == (0, 0)
    assert batch["images"].shape == (0, 3, 224, 224) and batch["has_image"].shape == (0,)
    assert batch["skipped"] == {"unreadable_image": 2}


def test_a_clean_batch_reports_nothing_skipped():
    assert collate_samples([sample(3)])["skipped"] == {}
