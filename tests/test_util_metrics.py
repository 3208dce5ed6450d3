"""util.metrics: meters, and the progress line's values for a scripted run on a fake clock."""

from __future__ import annotations

import logging

import pytest
import torch

from util.metrics import ProgressReporter, SmoothedValue


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_smoothed_value_window_and_global_means():
    meter = SmoothedValue(window=2)
    for value in (1.0, 2.0, 6.0):
        meter.update(value)
    assert (meter.latest, meter.window_average, meter.global_average, meter.count) == (6.0, 4.0, 3.0, 3)
    meter.update(0.0, n=3)
    assert meter.global_average == 9.0 / 6


def test_meters_refuse_tensors_and_bools():
    reporter = ProgressReporter(steps_per_epoch=4, epochs=1, print_freq=2)
    with pytest.raises(TypeError, match=r"'loss'.*\.item\(\)"):
        reporter.step_done(0, samples=1, tokens=1, loss=torch.tensor(1.0))
    with pytest.raises(TypeError, match="'skip'"):
        reporter.step_done(0, samples=1, tokens=1, skip=True)


def _run_steps(reporter, clock, steps, wait=0.5, compute=1.5, samples=8, tokens=100):
    """Each step waits `wait` s for data and computes for `compute` s; loss = 10 - step, lr = step * 1e-4."""
    lines = {}
    for step in steps:
        clock.advance(wait)
        reporter.batch_ready()
        clock.advance(compute)
        line = reporter.step_done(step, samples=samples, tokens=tokens, loss=10.0 - step, lr=step * 1e-4,
                                  grad_norm=2.0)
        if line is not None:
            lines[step] = line
    return lines


def test_progress_lines_on_schedule_with_the_right_values(caplog):
    clock = FakeClock()
    reporter = ProgressReporter(steps_per_epoch=10, epochs=3, print_freq=4, window=2, clock=clock)
    reporter.start_epoch(1)
    with caplog.at_level(logging.INFO, logger="util.metrics"):
        lines = _run_steps(reporter, clock, range(10))
    # The epoch's first step, every 4th step, and the last one.
    assert sorted(lines) == [0, 3, 7, 9]
    assert [r.getMessage() for r in caplog.records] == [lines[s] for s in (0, 3, 7, 9)]

    # Step 3 (1-based 4 of 10): 3 steps of 2 s since the line at step 0; 2 s per step on average.
    # Window (2) of losses 7, 8 -> 7.5; epoch mean of 10, 9, 8, 7 -> 8.5. 24 samples and 300 tokens in 6 s.
    # 6 steps left in the epoch (12 s); plus one more epoch of 10 steps -> 16 steps, 32 s.
    assert lines[3] == (
        "epoch [2/3] step [ 4/10]  loss 7.5000 (8.5000)  lr 3.000e-04  grad_norm 2.0000 (2.0000)  "
        "samples/s 4.0  tokens/s 50  data_wait 0.500s  eta_epoch 0:00:12  eta_run 0:00:32"
    )
    # The last line: 2 steps since step 7; no time left in this epoch, one epoch (20 s) in the run.
    assert lines[9] == (
        "epoch [2/3] step [10/10]  loss 1.5000 (5.5000)  lr 9.000e-04  grad_norm 2.0000 (2.0000)  "
        "samples/s 4.0  tokens/s 50  data_wait 0.500s  eta_epoch 0:00:00  eta_run 0:00:20"
    )


def test_a_metric_given_only_on_line_steps_weighs_the_steps_it_covers():
    # As the engine does: the loss is read on the steps that print, as its mean since the last line.
    clock = FakeClock()
    reporter = ProgressReporter(steps_per_epoch=10, epochs=1, print_freq=4, window=1, clock=clock)
    losses = [10.0 - step for step in range(10)]
    last_line = -1
    for step in range(10):
        values = {"lr": 1e-4}
        if reporter.should_report(step):
            values["loss"] = sum(losses[last_line + 1:step + 1]) / (step - last_line)
            last_line = step
        line = reporter.step_done(step, samples=1, tokens=1, **values)
    # The epoch mean (in brackets) is the mean of all ten losses: sum(10..1) / 10 = 5.5.
    assert line.startswith("epoch [1/1] step [10/10]  lr 1.000e-04  loss 1.5000 (5.5000)")


def test_resuming_mid_epoch_times_only_the_steps_run_and_long_etas_read_in_days():
    clock = FakeClock()
    reporter = ProgressReporter(steps_per_epoch=1000, epochs=150, print_freq=100, clock=clock)
    reporter.start_epoch(0, first_step=500)
    lines = _run_steps(reporter, clock, range(500, 600), wait=0.0, compute=2.0, samples=4, tokens=0)
    assert sorted(lines) == [500, 599]
    # 400 steps left in the epoch at 2 s each, then 149 epochs of 1000: (400 + 149000) * 2 s = 298800 s.
    assert "step [ 600/1000]" in lines[599]
    assert "samples/s 2.0" in lines[599] and "data_wait 0.000s" in lines[599]
    assert "eta_epoch 0:13:20" in lines[599]
    assert "eta_run 3 days, 11:00:00" in lines[599]


def test_a_new_epoch_resets_the_meters():
    clock = FakeClock()
    reporter = ProgressReporter(steps_per_epoch=2, epochs=2, print_freq=1, clock=clock)
    _run_steps(reporter, clock, range(2))
    reporter.start_epoch(1)
    lines = _run_steps(reporter, clock, [0])
    assert lines[0].startswith("epoch [2/2] step [1/2]  loss 10.0000 (10.0000)")
