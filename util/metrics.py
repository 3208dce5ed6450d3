"""Meters and the progress line that training prints every few steps.

Everything here takes Python numbers, never tensors: reading a CUDA tensor (`.item()`) waits for
the GPU to finish all queued work, so the engine decides when to pay that (for instance only on
the steps `ProgressReporter.should_report` names) and hands over floats.

Times come from an injectable clock. Without a device sync they measure when the host got through a
step, not the GPU; averaged over the steps between two lines (where the engine reads the loss and
thus syncs) they are the real rate.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections import deque
from typing import Callable

logger = logging.getLogger(__name__)


def _check_number(name: str, value: object) -> float:
    # bool is an int too, and is a plausible mistake for a flag; tensors would hide a host sync.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"metric {name!r} got {type(value).__name__}; pass a Python number "
            "(call .item() on a tensor where you choose to sync with the device)"
        )
    return float(value)


class SmoothedValue:
    """A series of numbers: the latest, the mean of the last `window`, and the mean of all.

    Each number may stand for `n` of the series (a mean over n steps or samples): both means
    weigh it n times.
    """

    def __init__(self, window: int = 20):
        if window < 1:
            raise ValueError(f"window {window} must be at least 1")
        self._recent: deque[tuple[float, int]] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        """Add `value`, a mean over `n` items (e.g. a batch mean of n samples)."""
        value = _check_number("value", value)
        self._recent.append((value, n))
        self.total += value * n
        self.count += n

    @property
    def latest(self) -> float:
        return self._recent[-1][0]

    @property
    def window_average(self) -> float:
        return sum(value * n for value, n in self._recent) / sum(n for _, n in self._recent)

    @property
    def global_average(self) -> float:
        return self.total / self.count


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class ProgressReporter:
    """Times the training loop and logs a progress line every `print_freq` steps.

    Per loader iteration the engine calls `batch_ready()` as soon as the batch is in hand (the time
    since the previous step ended is data wait), then `step_done(step, ...)` after the optimizer.
    A line is logged on the first step of an epoch, every `print_freq` steps and on the epoch's
    last step. It shows each metric's window mean and epoch mean (the learning rate: its latest
    value), samples/s, tokens/s and data wait since the previous line, and the time left to the end
    of the epoch and of the run, from the epoch's mean step time (evaluation and saving excluded).
    """

    def __init__(
        self,
        steps_per_epoch: int,
        epochs: int,
        print_freq: int,
        window: int = 20,
        clock: Callable[[], float] = time.perf_counter,
    ):
        # The settings were checked with the flags (engine/flags.py), the start step by the loop.
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.print_freq = print_freq
        self.window = window
        self.clock = clock
        self.start_epoch(0)

    def start_epoch(self, epoch: int, first_step: int = 0) -> None:
        """Reset the meters and clocks; `first_step` > 0 when resuming in the middle of the epoch."""
        self.epoch = epoch
        self.first_step = first_step
        self.meters: dict[str, SmoothedValue] = {}
        self._last_given: dict[str, int] = {}  # metric -> the step it was last given at
        now = self.clock()
        self._epoch_start = self._last_line = self._step_end = now
        self._steps_since_line = 0
        self._samples_since_line = self._tokens_since_line = 0
        self._wait_since_line = 0.0

    def batch_ready(self) -> None:
        """The batch has arrived: the time since the previous step ended was spent waiting for data."""
        self._wait_since_line += self.clock() - self._step_end

    def should_report(self, step: int) -> bool:
        """Whether `step_done(step)` will log a line: the engine reads its tensors on these steps."""
        return step == self.first_step or (step + 1) % self.print_freq == 0 or step + 1 == self.steps_per_epoch

    def step_done(self, step: int, samples: int, tokens: int, **values: float) -> str | None:
        """Record a finished step (`step` counts from 0 within the epoch) and its metrics.

        `values` are named numbers such as loss=, lr=, grad_norm=; a metric may be left out on
        steps where it was not read, and is then given as its mean over the steps since it was
        last given (the engine reads the loss only on the steps that print a line): the meters
        weigh it by that many steps. Returns the progress line when one is logged, else None.
        """
        self._step_end = self.clock()
        for name, value in values.items():
            steps_covered = step - self._last_given.get(name, self.first_step - 1)
            self._last_given[name] = step
            self.meters.setdefault(name, SmoothedValue(self.window)).update(_check_number(name, value), steps_covered)
        self._steps_since_line += 1
        self._samples_since_line += samples
        self._tokens_since_line += tokens
        if not self.should_report(step):
            return None
        line = self._format_line(step)
        logger.info(line)
        self._last_line = self._step_end
        self._steps_since_line = self._samples_since_line = self._tokens_since_line = 0
        self._wait_since_line = 0.0
        return line

    def _format_line(self, step: int) -> str:
        interval = max(self._step_end - self._last_line, 1e-9)
        steps_this_epoch = step + 1 - self.first_step
        seconds_per_step = (self._step_end - self._epoch_start) / steps_this_epoch
        steps_left_epoch = self.steps_per_epoch - (step + 1)
        steps_left_run = steps_left_epoch + (self.epochs - self.epoch - 1) * self.steps_per_epoch
        width = len(str(self.steps_per_epoch))
        parts = [f"epoch [{self.epoch + 1}/{self.epochs}] step [{step + 1:>{width}}/{self.steps_per_epoch}]"]
        for name, meter in self.meters.items():
            if name == "lr":
                parts.append(f"lr {meter.latest:.3e}")
            else:
                parts.append(f"{name} {meter.window_average:.4f} ({meter.global_average:.4f})")
        parts += [
            f"samples/s {self._samples_since_line / interval:.1f}",
            f"tokens/s {self._tokens_since_line / interval:.0f}",
            f"data_wait {self._wait_since_line / self._steps_since_line:.3f}s",
            f"eta_epoch {_duration(steps_left_epoch * seconds_per_step)}",
            f"eta_run {_duration(steps_left_run * seconds_per_step)}",
        ]
        return "  ".join(parts)
