"""One epoch of training, the same for both phases: forward, backward, optimizer step, progress.

An optimizer step takes `accum_iter` micro-batches (the epoch's last step may take fewer). On all
but the last, DDP's gradient all-reduce is switched off (`no_sync`), so gradients travel once per
step. The learning rate is set before every step from the fractional epoch, so a run resumed
mid-epoch recomputes it and needs no scheduler state.

The step never waits for the GPU: losses and gradient norms go into device-side sums
(engine/running_stats.py), read on the steps that print a progress line, at the epoch's end and
before a checkpoint. A non-finite loss is found at the next such read and stops the run with
`NonFiniteLossError`, naming the first bad step; the caller saves nothing after it.

`Trainer.train_epoch` is a generator: it yields the position after every optimizer step but the
epoch's last, so that the run, which owns checkpoints and stops, decides there whether to save or
to stop (it stops by leaving the loop). The loop never calls back into the run. When the epoch's
steps are done, `finish_epoch()` returns its stats.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.data_source import BadFractionCheck, batch_to_device
from engine.errors import NonFiniteLossError, TrainingError
from engine.precision import autocast
from engine.running_stats import RunningStats
from util.distributed import DistributedContext, all_reduce_mean, all_reduce_sum_counts, any_rank, gather_from_ranks
from util.lr_schedule import learning_rate, set_learning_rate
from util.metric_writers import TensorBoardWriter
from util.metrics import ProgressReporter

logger = logging.getLogger(__name__)

_NOT_SAVED = (
    "stopped without saving, so checkpoint-last.pth in the output folder (if any) holds the last good state. "
    "Lower --lr/--blr, set --clip_grad or change --precision, then resume from it with --resume auto --resume_force"
)

# Under all_reduce_sum_counts this key carries the samples seen beside the bad-sample reasons.
_SEEN = "_seen"


@dataclass(frozen=True)
class Position:
    """Where training stands: `step_in_epoch` optimizer steps of `epoch` are done, `global_step` in all."""

    epoch: int
    step_in_epoch: int
    global_step: int

    def describe(self) -> str:
        """Where training stands, for people: epochs counted from 1, as the progress line counts them."""
        if self.step_in_epoch == 0:
            return f"the end of epoch {self.epoch} (global step {self.global_step})"
        return f"epoch {self.epoch + 1} after step {self.step_in_epoch} (global step {self.global_step})"


@dataclass(frozen=True)
class LoopSettings:
    """The flags the loop reads (see engine/flags.py)."""

    epochs: int
    accum_iter: int
    lr: float
    min_lr: float
    warmup_epochs: float
    clip_grad: float | None
    print_freq: int
    precision: str
    step_loss_path: Path | None = None
    """Where every step's loss is appended (rank 0 writes), for --log_step_losses; None: not recorded."""


def steps_in_epoch(batches: int, accum_iter: int) -> int:
    """Optimizer steps over `batches` micro-batches; the last step takes what is left."""
    return math.ceil(batches / accum_iter)


def batches_in_steps(steps: int, batches: int, accum_iter: int) -> int:
    """Micro-batches that the first `steps` optimizer steps of an epoch of `batches` take."""
    return min(steps * accum_iter, batches)


class Trainer:
    """Runs epochs of optimizer steps on `module` (engine/parallel.py's wrapper of the model)."""

    def __init__(self, module: nn.Module, trainables: Sequence[nn.Parameter], optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, settings: LoopSettings, context: DistributedContext,
                 check_bad_fraction: BadFractionCheck, writer: TensorBoardWriter | None = None):
        self.module = module
        self.trainables = list(trainables)
        self.optimizer = optimizer
        self.scaler = scaler
        self.settings = settings
        self.context = context
        self.check_bad_fraction = check_bad_fraction
        self.writer = writer
        self.stats = RunningStats(context.device)
        self._epoch = 0
        self._epoch_first_global_step = 0
        self._last_lr = 0.0

    # -- one epoch ---------------------------------------------------------------------------------

    def train_epoch(self, batches: Iterable[dict], batches_in_epoch: int, start: Position) -> Iterator[Position]:
        """Train from `start` to the end of its epoch; `batches` yields the epoch's remaining batches.

        Yields the position after every step but the epoch's last (the caller may save there, or
        stop by not asking for more); then call finish_epoch().
        """
        accum = self.settings.accum_iter
        steps = steps_in_epoch(batches_in_epoch, accum)
        if not 0 <= start.step_in_epoch < steps:
            raise TrainingError(f"cannot start epoch {start.epoch + 1} at step {start.step_in_epoch}: it has {steps} steps")
        self.module.train()
        if start.step_in_epoch == 0:
            self.stats.start_epoch()  # mid-epoch, the caller has restored the epoch's sums so far
        self._epoch = start.epoch
        self._epoch_first_global_step = start.global_step - start.step_in_epoch
        reporter = ProgressReporter(steps, self.settings.epochs, self.settings.print_freq)
        reporter.start_epoch(start.epoch, start.step_in_epoch)
        iterator = iter(batches)
        position = start
        for step in range(start.step_in_epoch, steps):
            micro_batches = min(accum, batches_in_epoch - step * accum)
            lr = learning_rate(start.epoch + step * accum / batches_in_epoch, self.settings.lr,
                               self.settings.min_lr, self.settings.warmup_epochs, self.settings.epochs)
            set_learning_rate(self.optimizer, lr)
            self._last_lr = lr
            samples_before, tokens_before = self.stats.samples, self.stats.tokens
            loss_sum, losses = self._accumulate_gradients(iterator, micro_batches, reporter, step)
            grad_norm = self._optimizer_step()
            position = Position(start.epoch, step + 1, position.global_step + 1)
            self.stats.add_step(loss_sum, losses, grad_norm, position.global_step)
            self._report(reporter, step, position, lr, self.stats.samples - samples_before,
                         self.stats.tokens - tokens_before)
            if self.settings.step_loss_path is not None:
                self._record_step_loss(position, loss_sum, losses)
            if step + 1 < steps:
                yield position

    def _accumulate_gradients(self, iterator, micro_batches: int, reporter: ProgressReporter,
                              step: int) -> tuple[torch.Tensor, int]:
        """Forward and backward over one step's micro-batches; returns (sum of their losses, how many)."""
        loss_sum = torch.zeros((), device=self.context.device)
        losses = 0
        for micro in range(micro_batches):
            try:
                batch = next(iterator)
            except StopIteration:
                raise TrainingError(f"the data ran out at step {step}: the batch sampler yielded fewer batches "
                                    "than its len() promised") from None
            if micro == 0:
                reporter.batch_ready()
            self.stats.count_batch(batch)
            tokens, labels, images, has_image = batch_to_device(batch, self.context.device)
            with self._gradient_sync(last_micro_batch=micro == micro_batches - 1):
                with autocast(self.context.device, self.settings.precision):
                    loss = self.module(tokens, labels, images, has_image)
                # Each micro-batch's mean loss weighs 1 / micro_batches: 1 / accum_iter as in the
                # reference, except in an epoch's shorter last step.
                self.scaler.scale(loss / micro_batches).backward()
            if tokens.shape[0] > 0:
                loss_sum = loss_sum + loss.detach()
                losses += 1
        return loss_sum, losses

    def _gradient_sync(self, last_micro_batch: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        if isinstance(self.module, DistributedDataParallel) and not last_micro_batch:
            return self.module.no_sync()
        return contextlib.nullcontext()

    def _optimizer_step(self) -> torch.Tensor:
        """Unscale, measure (and clip) the gradients, step, clear; returns the total norm (on the device)."""
        self.scaler.unscale_(self.optimizer)
        if self.settings.clip_grad is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainables, self.settings.clip_grad)
        else:
            grad_norm = torch.nn.utils.get_total_norm([param.grad for param in self.trainables if param.grad is not None])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    # -- reading the device: progress lines, checks -------------------------------------------------

    def _report(self, reporter: ProgressReporter, step: int, position: Position, lr: float,
                samples: int, tokens: int) -> None:
        values = {"lr": lr}
        if reporter.should_report(step):
            means, first_bad = self.stats.read_interval()
            self._raise_if_non_finite(first_bad)
            self.check_bad_fraction(*self._global_bad_counts())
            means = all_reduce_mean(means, self.context)
            values.update(loss=means["loss"], grad_norm=means["grad_norm"])  # the line's order
            if self.writer is not None:
                # TensorBoard's x-axis is the global optimizer step (the epoch scalars use it too).
                self.writer.add_scalars({"train_loss": means["loss"], "grad_norm": means["grad_norm"], "lr": lr},
                                        position.global_step)
        world = self.context.world_size  # the line shows the whole run's rates (ranks take equal shares)
        reporter.step_done(step, samples * world, tokens * world, **values)

    def verify_finite(self, position: Position) -> None:
        """Raise NonFiniteLossError if any rank saw a non-finite loss so far, or holds a non-finite
        trainable value now (a huge update can overflow while the loss was finite). Call before saving."""
        self._raise_if_non_finite(self.stats.first_non_finite_step())
        finite = bool(torch.stack([torch.isfinite(param).all() for param in self.trainables]).all())
        if any_rank(not finite, self.context):
            raise NonFiniteLossError(f"the trainable tensors hold non-finite values after optimizer step "
                                     f"{position.global_step} of the run (epoch {position.epoch + 1}, step "
                                     f"{position.step_in_epoch} of the epoch); {_NOT_SAVED}")

    def _raise_if_non_finite(self, first_bad: int | None) -> None:
        if not any_rank(first_bad is not None, self.context):
            return
        step = min(bad for bad in gather_from_ranks(first_bad, self.context) if bad is not None)
        raise NonFiniteLossError(
            f"the loss is not finite at optimizer step {step} of the run (epoch {self._epoch + 1}, step "
            f"{step - self._epoch_first_global_step} of the epoch); {_NOT_SAVED}"
        )

    def _global_bad_counts(self) -> tuple[dict[str, int], int]:
        """This epoch's bad samples by reason and samples seen, summed over ranks."""
        totals = all_reduce_sum_counts({**self.stats.skipped, _SEEN: self.stats.seen}, self.context)
        seen = totals.pop(_SEEN, 0)
        return totals, seen

    def _record_step_loss(self, position: Position, loss_sum: torch.Tensor, losses: int) -> None:
        """--log_step_losses: the step's mean loss over micro-batches and ranks (reads the device)."""
        loss = loss_sum.item() / losses if losses else 0.0
        loss = all_reduce_mean({"loss": loss}, self.context)["loss"]
        if self.context.is_main:
            record = {"epoch": position.epoch, "step": position.step_in_epoch, "global_step": position.global_step,
                      "loss": loss}
            with open(self.settings.step_loss_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def finish_epoch(self) -> dict:
        """The epoch's stats: means over ranks (loss, grad_norm), the last lr, samples and bad samples
        summed over ranks. Reads the device; raises on a non-finite loss or too many bad samples."""
        means, first_bad = self.stats.read_epoch()
        self._raise_if_non_finite(first_bad)
        skipped, seen = self._global_bad_counts()
        self.check_bad_fraction(skipped, seen, min_seen=0)
        means = all_reduce_mean(means, self.context)
        return {**means, "lr": self._last_lr, "samples": seen - sum(skipped.values()), "bad_samples": skipped}
