"""The learning rate as a pure function of the (fractional) epoch, and the setter apart from it.

The schedule is the reference's: a linear warm-up from 0 to the base rate over `warmup_epochs`,
then half a cosine down to `min_lr` at `total_epochs`. The epoch is fractional (epoch + step /
steps_per_epoch) so the rate changes every iteration; a resumed run recomputes it from the step
and needs no scheduler state.
"""

from __future__ import annotations

import math

import torch

# The reference's linear scaling rule: `--blr` is the rate for an effective batch of 256.
REFERENCE_BATCH_SIZE = 256


def check_schedule(base_lr: float, min_lr: float, warmup_epochs: float, total_epochs: float) -> None:
    """Raise ValueError, naming the flag, when the schedule's settings cannot work together."""
    if base_lr < 0 or min_lr < 0:
        raise ValueError(f"learning rates must not be negative: --lr {base_lr}, --min_lr {min_lr}")
    if min_lr > base_lr:
        raise ValueError(f"--min_lr {min_lr} is above the base rate {base_lr}; lower --min_lr or raise --lr/--blr")
    if total_epochs <= 0:
        raise ValueError(f"--epochs {total_epochs} must be positive")
    if not 0 <= warmup_epochs <= total_epochs:
        raise ValueError(f"--warmup_epochs {warmup_epochs} must lie between 0 and --epochs {total_epochs}")


def learning_rate(epoch: float, base_lr: float, min_lr: float, warmup_epochs: float, total_epochs: float) -> float:
    """The rate at a fractional epoch: 0 -> base_lr linearly over warm-up, then cosine to min_lr.

    Past `total_epochs` the rate stays at `min_lr` (the cosine would climb back up). The settings
    are checked once, by check_schedule, before a run starts: this is called every step.
    """
    if epoch < 0:
        raise ValueError(f"epoch {epoch} must not be negative")
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    decay_epochs = total_epochs - warmup_epochs
    progress = 1.0 if decay_epochs == 0 else min(1.0, (epoch - warmup_epochs) / decay_epochs)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def absolute_lr(blr: float, effective_batch_size: int) -> float:
    """The rate for `effective_batch_size` (per-GPU batch x accum_iter x GPUs) given `--blr`."""
    if blr < 0:
        raise ValueError(f"--blr {blr} must not be negative")
    if effective_batch_size < 1:
        raise ValueError(f"the effective batch size {effective_batch_size} must be at least 1")
    return blr * effective_batch_size / REFERENCE_BATCH_SIZE


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group `lr`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
