"""Per-step numbers summed on the device, read by the host only when they are shown or saved.

Reading a GPU value (`.item()`) makes the host wait for every queued kernel, which starves the GPU
of work at every step. So the step adds its loss and gradient norm to sums kept on the device,
and the host reads them in one transfer on the steps that print a progress line, at the end of
the epoch and before a checkpoint is written. The first step whose loss was not finite is
recorded on the device too, so that a NaN is found at the next read even if later losses look
fine, and nothing computed after it is ever saved.

Counts the host knows without asking the device (micro-batches with a loss, samples, bad
samples) are kept on the host.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

# Slots of the device sums.
_LOSS, _GRAD_NORM, _FINITE_GRAD_NORMS = range(3)
_SLOTS = 3


class RunningStats:
    """Sums over the current epoch and over the steps since the last progress line."""

    def __init__(self, device: torch.device):
        self.device = device
        self._epoch = torch.zeros(_SLOTS, dtype=torch.float64, device=device)
        self._interval = torch.zeros(_SLOTS, dtype=torch.float64, device=device)
        self._first_non_finite = torch.full((), -1, dtype=torch.int64, device=device)
        self.epoch_losses = 0  # micro-batch losses summed into the epoch slot (empty batches have none)
        self.interval_losses = 0
        self.samples = 0  # good samples trained on this epoch, this rank
        self.tokens = 0  # token positions (padding included) this epoch, this rank
        self.skipped: Counter[str] = Counter()  # bad samples dropped this epoch, by reason

    def count_batch(self, batch: dict[str, Any]) -> None:
        """Host-side counts of one micro-batch (shapes and the collate function's `skipped`)."""
        self.samples += batch["tokens"].shape[0]
        self.tokens += batch["tokens"].numel()
        self.skipped.update(batch.get("skipped", {}))

    @property
    def seen(self) -> int:
        """Samples drawn this epoch on this rank, good and bad."""
        return self.samples + sum(self.skipped.values())

    def add_step(self, loss_sum: torch.Tensor, losses: int, grad_norm: torch.Tensor, global_step: int) -> None:
        """One optimizer step: the sum of its `losses` micro-batch losses and its gradient norm.

        A non-finite gradient norm (a step the fp16 loss scaler skips) is left out of the mean.
        """
        finite_norm = torch.isfinite(grad_norm)
        row = torch.stack([loss_sum.detach().double(), torch.where(finite_norm, grad_norm.detach(), 0.0).double(),
                           finite_norm.double()])
        self._epoch += row
        self._interval += row
        self.epoch_losses += losses
        self.interval_losses += losses
        first_bad = (self._first_non_finite < 0) & ~torch.isfinite(loss_sum.detach())
        self._first_non_finite = torch.where(first_bad, global_step, self._first_non_finite)

    def read_interval(self) -> tuple[dict[str, float], int | None]:
        """Means since the previous call ({'loss', 'grad_norm'}), and the first non-finite step (or None).

        One host-device transfer; the interval sums start again from zero.
        """
        sums, first_bad = self._read(self._interval)
        means = _means(sums, self.interval_losses)
        self._interval.zero_()
        self.interval_losses = 0
        return means, first_bad

    def read_epoch(self) -> tuple[dict[str, float], int | None]:
        """This rank's means over the epoch so far, and the first non-finite step (or None)."""
        sums, first_bad = self._read(self._epoch)
        return _means(sums, self.epoch_losses), first_bad

    def first_non_finite_step(self) -> int | None:
        return self._read(self._epoch)[1]

    def start_epoch(self) -> None:
        self._epoch.zero_()
        self._interval.zero_()
        self.epoch_losses = self.interval_losses = self.samples = self.tokens = 0
        self.skipped = Counter()

    def state_dict(self) -> dict[str, Any]:
        """The epoch's sums so far (plain numbers), so that a run resumed mid-epoch logs the same
        epoch means as an uninterrupted one."""
        sums, _ = self._read(self._epoch)
        return {"sums": sums, "losses": self.epoch_losses, "samples": self.samples, "tokens": self.tokens,
                "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_epoch()
        self._epoch.copy_(torch.tensor(state["sums"], dtype=torch.float64))
        self.epoch_losses = int(state["losses"])
        self.samples = int(state["samples"])
        self.tokens = int(state["tokens"])
        self.skipped = Counter(state["skipped"])

    def _read(self, sums: torch.Tensor) -> tuple[list[float], int | None]:
        packed = torch.cat([sums, self._first_non_finite.double().view(1)]).tolist()  # the one device sync
        first_bad = int(packed[-1])
        return packed[:-1], (first_bad if first_bad >= 0 else None)


def _means(sums: list[float], losses: int) -> dict[str, float]:
    finite_norms = sums[_FINITE_GRAD_NORMS]
    return {
        "loss": sums[_LOSS] / losses if losses else 0.0,
        "grad_norm": sums[_GRAD_NORM] / finite_norms if finite_norms else float("nan"),
    }
