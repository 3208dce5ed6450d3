"""util.lr_schedule: linear warm-up, half-cycle cosine, the min_lr floor, the checks, the batch scaling rule, the setter."""

from __future__ import annotations

import math

import pytest
import torch

from util.lr_schedule import absolute_lr, check_schedule, learning_rate, set_learning_rate

# 5 warm-up epochs of 150, the published pre-training recipe's shape.
SCHEDULE = dict(base_lr=1e-3, min_lr=1e-5, warmup_epochs=5, total_epochs=150)


def test_warmup_starts_at_zero_and_rises_linearly():
    assert learning_rate(0.0, **SCHEDULE) == 0.0
    assert learning_rate(2.5, **SCHEDULE) == pytest.approx(0.5e-3, rel=1e-12)
    assert learning_rate(1.0, **SCHEDULE) == pytest.approx(0.2e-3, rel=1e-12)


def test_warmup_ends_at_the_base_rate():
    assert learning_rate(5.0, **SCHEDULE) == pytest.approx(1e-3, rel=1e-12)
    assert learning_rate(5.0 - 1e-9, **SCHEDULE) == pytest.approx(1e-3, rel=1e-6)


def test_cosine_midpoint_is_halfway_between_base_and_min():
    midpoint = 5 + (150 - 5) / 2
    assert learning_rate(midpoint, **SCHEDULE) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-12)
    # A quarter of the way down the cosine: min + (base - min) * (1 + cos(pi/4)) / 2.
    quarter = 5 + (150 - 5) / 4
    expected = 1e-5 + (1e-3 - 1e-5) * (1 + math.sqrt(0.5)) / 2
    assert learning_rate(quarter, **SCHEDULE) == pytest.approx(expected, rel=1e-12)


def test_end_value_and_floor_past_the_end():
    assert learning_rate(150.0, **SCHEDULE) == pytest.approx(1e-5, rel=1e-12)
    assert learning_rate(151.0, **SCHEDULE) == pytest.approx(1e-5, rel=1e-12)
    assert learning_rate(400.0, **SCHEDULE) == pytest.approx(1e-5, rel=1e-12)


def test_decay_never_rises_and_never_drops_below_min_lr():
    rates = [learning_rate(5 + i * 0.25, **SCHEDULE) for i in range(4 * 160)]
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:]))
    assert min(rates) >= 1e-5


def test_no_warmup_starts_at_the_base_rate():
    assert learning_rate(0.0, base_lr=1e-3, min_lr=0.0, warmup_epochs=0, total_epochs=4) == 1e-3


def test_warmup_over_the_whole_run():
    assert learning_rate(2.0, base_lr=1e-3, min_lr=0.0, warmup_epochs=4, total_epochs=4) == 0.5e-3
    assert learning_rate(4.0, base_lr=1e-3, min_lr=0.0, warmup_epochs=4, total_epochs=4) == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(min_lr=2e-3), "--min_lr"),
        (dict(warmup_epochs=200), "--warmup_epochs"),
        (dict(total_epochs=0, warmup_epochs=0), "--epochs"),
        (dict(base_lr=-1.0), "negative"),
    ],
)
def test_bad_schedules_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_schedule(**{**SCHEDULE, **overrides})


def test_absolute_lr_scales_blr_by_the_effective_batch_over_256():
    assert absolute_lr(1e-4, 256) == 1e-4
    assert absolute_lr(0.5, 512) == 1.0
    assert absolute_lr(1e-3, 32) == pytest.approx(1.25e-4, rel=1e-12)  # 4 per GPU x 8 GPUs
    with pytest.raises(ValueError, match="effective batch size"):
        absolute_lr(1e-3, 0)


def test_set_learning_rate_sets_every_group():
    weights, biases = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([{"params": [weights]}, {"params": [biases], "weight_decay": 0.0}], lr=1.0)
    set_learning_rate(optimizer, 0.5)
    assert [group["lr"] for group in optimizer.param_groups] == [0.5, 0.5]
