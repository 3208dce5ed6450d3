"""The pieces together: dataset, sampler and collate in a DataLoader with worker processes."""

import functools
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from data.bad_samples import BadSampleError, TooManyBadSamplesError, check_bad_fraction
from data.collate import collate_samples
from data.config import DataConfig, MetaSource
from data.dataset import PretrainDataset
from data.sampler import DistributedBatchSampler
from data.transforms import train_transform
from support.data_files import make_image, write_table

ROWS = 10
BAD_ROWS = {3: "absent.png", 7: "garbage.png"}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    make_image(tmp_path / "ok.png")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG but not really")
    rows = [{"url": BAD_ROWS.get(row, "ok.png"), "caption": "a red circle" * (1 + row % 3)} for row in range(ROWS)]
    return write_table(tmp_path / "cc.tsv", rows)


def loader_for(table: Path, tokenizer, on_bad_sample: str, num_workers: int = 2, **sampler_kwargs) -> DataLoader:
    dataset = PretrainDataset(DataConfig(table.parent / "x.yaml", [MetaSource(table)]), tokenizer,
                              train_transform(), max_words=256, on_bad_sample=on_bad_sample)
    sampler = DistributedBatchSampler.for_dataset(dataset, batch_size=3, **sampler_kwargs)
    collate = functools.partial(collate_samples, pad_to_multiple=16)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def test_workers_skip_bad_samples_and_the_counts_arrive_in_the_batches(table: Path, tokenizer):
    loader = loader_for(table, tokenizer, "skip", group_by_length=True)
    batches = list(loader)
    assert len(batches) == len(loader.batch_sampler) == 4
    assert sum(len(batch["tokens"]) for batch in batches) == ROWS - len(BAD_ROWS)
    skipped = {}
    for batch in batches:
        for reason, count in batch["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
        assert batch["tokens"].shape[1] % 16 == 0
        assert batch["images"].shape == (len(batch["tokens"]), 3, 224, 224) and batch["has_image"].all()
    assert skipped == {"missing_image": 1, "unreadable_image": 1}


def test_error_policy_stops_at_the_first_bad_sample(table: Path, tokenizer):
    # In the main process: after an exception in a worker, torch takes 5 s per worker to shut
    # them down, too slow for a unit test; torch re-raises a worker's exception with its type.
    expected = rf"{table} row (3|7) \(0-based, header not counted\): (missing_image|unreadable_image): "
    with pytest.raises(BadSampleError, match=expected):
        list(loader_for(table, tokenizer, "error", num_workers=0))


def test_bad_fraction_check():
    check_bad_fraction({"missing_image": 10}, seen=1000, max_fraction=0.01)  # exactly 1%: fine
    with pytest.raises(TooManyBadSamplesError, match=r"11 of 1000 samples were bad \(1\.10%: missing_image: 11\)"):
        check_bad_fraction({"missing_image": 11}, seen=1000, max_fraction=0.01)
    check_bad_fraction({"missing_image": 5}, seen=10, max_fraction=0.01)  # too early to judge
    with pytest.raises(TooManyBadSamplesError, match="--max_bad_fraction 0.01"):
        check_bad_fraction({"missing_image": 5}, seen=10, max_fraction=0.01, min_seen=0)
    check_bad_fraction({}, seen=0, max_fraction=0.0, min_seen=0)
