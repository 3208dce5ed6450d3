from collections import Counter

import numpy as np
import pytest

from data.sampler import DistributedBatchSampler

SIZES = [61, 40]  # two sources, 101 samples: no batch size or world size divides it
LENGTHS = np.random.default_rng(0).integers(1, 500, size=sum(SIZES))


def ranks(num_replicas: int = 2, **kwargs) -> list[DistributedBatchSampler]:
    kwargs.setdefault("lengths", LENGTHS)
    return [DistributedBatchSampler(SIZES, 4, num_replicas=num_replicas, rank=rank, seed=3, **kwargs)
            for rank in range(num_replicas)]


def epoch_batches(samplers: list[DistributedBatchSampler], epoch: int) -> list[list[list[int]]]:
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


@pytest.mark.parametrize("group_by_length", [False, True])
@pytest.mark.parametrize("num_replicas, batch_size", [(2, 4), (2, 1), (3, 8), (1, 5)])
def test_every_index_once_per_epoch_and_equal_batch_counts(group_by_length, num_replicas, batch_size):
    samplers = [DistributedBatchSampler(SIZES, batch_size, lengths=LENGTHS, group_by_length=group_by_length,
                                        group_window=2, num_replicas=num_replicas, rank=rank)
                for rank in range(num_replicas)]
    for epoch in range(3):
        per_rank = epoch_batches(samplers, epoch)
        counts = {len(batches) for batches in per_rank}
        assert counts == {len(samplers[0])}  # the same number of batches on every rank, as __len__ says
        indices = [index for batches in per_rank for batch in batches for index in batch]
        assert sorted(indices) == list(range(sum(SIZES)))
        sizes = [len(batch) for batches in per_rank for batch in batches]
        assert max(sizes) <= batch_size
        if batch_size > 1:
            assert min(sizes) >= 1  # no empty batch while the epoch has samples to spare


def test_only_the_last_step_is_smaller():
    samplers = ranks()
    for rank_batches in epoch_batches(samplers, 0):
        assert [len(batch) for batch in rank_batches[:-1]] == [4] * (len(rank_batches) - 1)
    # 101 = 12 full steps of 2 x 4, and 5 left over, spread 3 + 2 over the two ranks.
    assert [len(rank_batches[-1]) for rank_batches in epoch_batches(samplers, 0)] == [3, 2]


def test_order_is_a_pure_function_of_seed_and_epoch():
    first, again = ranks(), ranks()
    assert epoch_batches(first, 4) == epoch_batches(again, 4)
    assert epoch_batches(first, 4) != epoch_batches(first, 5)
    other_seed = [DistributedBatchSampler(SIZES, 4, num_replicas=2, rank=rank, seed=4) for rank in range(2)]
    assert epoch_batches(other_seed, 4) != epoch_batches(first, 4)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_split_epoch_covers_the_data_once_over_k_epochs(group_by_length):
    k = 3
    samplers = ranks(split_epoch=k, group_by_length=group_by_length)
    for first_epoch in (0, k):  # two passes
        seen = []
        for epoch in range(first_epoch, first_epoch + k):
            per_rank = epoch_batches(samplers, epoch)
            assert len({len(batches) for batches in per_rank}) == 1
            seen += [index for batches in per_rank for batch in batches for index in batch]
        assert sorted(seen) == list(range(sum(SIZES)))
    # A new pass draws a new order.
    assert epoch_batches(samplers, 0) != epoch_batches(samplers, k)


def test_length_grouping_makes_batches_of_similar_length():
    def mean_spread(group_by_length: bool) -> float:
        batches = [batch for rank_batches in epoch_batches(ranks(group_by_length=group_by_length), 0)
                   for batch in rank_batches]
        return float(np.mean([np.ptp(LENGTHS[batch]) for batch in batches]))

    assert mean_spread(True) < mean_spread(False) / 3


def test_ratios_subsample_and_repeat_per_pass():
    sampler = DistributedBatchSampler([10, 20], 4, ratios=[2.5, 0.3], seed=1)
    counts = Counter(index for batch in sampler for index in batch)
    first = [counts[index] for index in range(10)]
    assert sorted(first) == [2] * 5 + [3] * 5  # twice each, plus a random half once more
    second = [index for index in range(10, 30) if counts[index]]
    assert len(second) == 6 and all(counts[index] == 1 for index in second)  # a random 30%
    assert sum(len(batch) for batch in sampler) == 25 + 6
    sampler.set_epoch(1)
    assert {index for batch in sampler for index in batch if index >= 10} != set(second)  # redrawn per pass


@pytest.mark.parametrize("group_by_length", [False, True])
@pytest.mark.parametrize("done", [0, 1, 5, 6])  # 7 batches per rank in these epochs
def test_restored_state_yields_exactly_the_rest_of_the_epoch(group_by_length, done):
    samplers = ranks(split_epoch=2, group_by_length=group_by_length)
    full = epoch_batches(samplers, 3)
    state = samplers[0].state_dict(batches_done=done)
    assert state["epoch"] == 3 and state["batches_done"] == done
    for rank, batches in enumerate(full):
        restored = ranks(split_epoch=2, group_by_length=group_by_length)[rank]
        restored.load_state_dict(state)
        assert restored.epoch == 3 and restored.start_batch == done
        restored.set_epoch(3)
        assert list(restored) == batches[done:]
        assert len(restored) == len(batches)
        restored.set_epoch(4)  # the next epoch is whole again
        assert restored.start_batch == 0 and len(list(restored)) == len(restored)


def test_state_at_the_end_of_an_epoch_points_at_the_next():
    sampler = ranks()[0]
    sampler.set_epoch(2)
    assert sampler.state_dict(batches_done=len(sampler))["epoch"] == 3
    assert sampler.state_dict(batches_done=len(sampler))["batches_done"] == 0
    with pytest.raises(ValueError, match="outside this epoch"):
        sampler.state_dict(batches_done=len(sampler) + 1)


def test_restoring_under_other_settings_is_refused():
    state = ranks()[0].state_dict(batches_done=2)
    other = DistributedBatchSampler(SIZES, 4, num_replicas=4, rank=0, seed=3)
    with pytest.raises(ValueError, match="saved with num_replicas=2, this run has 4"):
        other.load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source_sizes": [3, 0]}, "at least one sample"),
        ({"ratios": [1.0]}, "one positive ratio per source"),
        ({"ratios": [1.0, 0.0]}, "one positive ratio per source"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"rank": 2}, r"rank 2 is outside 0\.\.1"),
        ({"split_epoch": 200}, "split_epoch=200 needs at least that many samples"),
        ({"group_by_length": True}, "group_by_length needs one length estimate per sample"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, message):
    arguments = {"source_sizes": SIZES, "batch_size": 4, "num_replicas": 2, "rank": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        DistributedBatchSampler(**arguments)
