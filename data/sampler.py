"""One batch sampler for training: dataset mixing, sub-epochs, length grouping, sharding, mid-epoch resume.

Use it as `DataLoader(dataset, batch_sampler=sampler, collate_fn=...)`, with one sampler per
rank (same arguments but `rank`). The batches of an epoch are a pure function of the arguments
and the epoch, built in this order:

1. Mixing, per pass: every source contributes `ratio` x its size samples. The whole part of a
   ratio repeats the source (2.5: every sample twice), the fraction draws a random subset
   without replacement (0.3: a random 30%), drawn anew each pass.
2. Shuffling: the pass's samples are permuted at random; mixing and permutation depend only on
   (seed, pass).
3. Sub-epochs (`split_epoch` K): the shuffled pass is cut into K contiguous parts whose sizes
   differ by at most one; epoch e uses part e % K of pass e // K, so K consecutive epochs see
   the pass exactly once. This is the published `--split_epoch`: `--epochs 150 --split_epoch 50`
   is 3 passes over the data, each cut into 50 epochs. Unlike the published sampler, no sample
   is dropped to make the parts equal.
4. Length grouping (optional): within windows of `group_window` global steps, samples are sorted
   by their estimated length, cut into global steps (batch_size x num_replicas samples, so the
   ranks of one step get batches of similar length and wait less for each other), and the order
   of the full steps is shuffled (seed, epoch); the last, partial step stays last.
5. Sharding: global step j gives rank r its r-th batch. Every rank gets ceil(N / (batch_size x
   num_replicas)) batches, N the epoch's samples, and each of the N goes to exactly one rank,
   once (with every ratio 1, each dataset index appears once per pass). Only the last step is
   smaller: its samples are spread evenly over the ranks (sizes differ by at most one); if that
   would leave a rank without a sample, the last two steps are spread together. A batch can
   only be empty when an epoch holds fewer samples than ranks (or batch_size is 1).
6. Resume: `state_dict(batches_done)` records the epoch and how many batches of it this rank has
   trained on; after `load_state_dict`, iterating that epoch yields exactly the batches after
   those, on every rank (the state is the same for all ranks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np


def draws_per_pass(source_sizes: Sequence[int], ratios: Sequence[float]) -> list[tuple[int, int]]:
    """Per source: (whole copies, size of the random subset drawn for the fraction) in one pass."""
    draws = []
    for size, ratio in zip(source_sizes, ratios):
        copies, fraction = divmod(float(ratio), 1.0)
        draws.append((int(copies), int(round(fraction * size))))
    return draws


def check_split_epoch(source_sizes: Sequence[int], ratios: Sequence[float], split_epoch: int) -> int:
    """The samples of one pass; a ValueError when they are fewer than the `split_epoch` parts."""
    draws = draws_per_pass(source_sizes, ratios)
    pass_size = sum(copies * size + extra for size, (copies, extra) in zip(source_sizes, draws))
    if pass_size < split_epoch:
        raise ValueError(f"split_epoch={split_epoch} needs at least that many samples per pass, "
                         f"but the ratios give {pass_size}")
    return pass_size


class DistributedBatchSampler:
    """Yields this rank's batches (lists of dataset indices) for the current epoch; see the module docstring."""

    def __init__(
        self,
        source_sizes: Sequence[int],
        batch_size: int,
        *,
        ratios: Sequence[float] | None = None,
        lengths: np.ndarray | None = None,
        group_by_length: bool = False,
        group_window: int = 64,
        split_epoch: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ):
        """`source_sizes`: samples of each meta file, in dataset index order; `ratios`: one per source
        (default 1); `lengths`: a length estimate per dataset index, needed for `group_by_length`."""
        self.source_sizes = [int(size) for size in source_sizes]
        self.ratios = [1.0] * len(self.source_sizes) if ratios is None else [float(ratio) for ratio in ratios]
        _check_arguments(
            self.source_sizes, self.ratios, batch_size, group_window, split_epoch, num_replicas, rank, seed
        )
        if group_by_length:
            if lengths is None or len(lengths) != sum(self.source_sizes):
                raise ValueError(
                    "group_by_length needs one length estimate per sample "
                    f"({sum(self.source_sizes)}), got {None if lengths is None else len(lengths)}"
                )
            self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.group_by_length = group_by_length
        self.group_window = group_window
        self.split_epoch = split_epoch
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self._starts = np.cumsum([0] + self.source_sizes)[:-1]
        self._pass_size = check_split_epoch(self.source_sizes, self.ratios, split_epoch)
        self.epoch = 0
        self._resume_epoch: int | None = None
        self._resume_batches = 0
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    @classmethod
    def for_dataset(cls, dataset, batch_size: int, **kwargs) -> DistributedBatchSampler:
        """Read sizes, ratios and (when grouping) length estimates from one of data/dataset.py's datasets."""
        if kwargs.get("group_by_length"):
            kwargs.setdefault("lengths", dataset.length_estimates())
        return cls(dataset.source_sizes, batch_size, ratios=dataset.source_ratios, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def start_batch(self) -> int:
        """How many batches of the current epoch a restored state skips (0 unless resumed mid-epoch)."""
        return self._resume_batches if self.epoch == self._resume_epoch else 0

    def __len__(self) -> int:
        """Batches per rank in the current epoch, counting those a restored state skips."""
        # np.array_split gives the first (pass size % K) parts one sample more.
        part = self.epoch % self.split_epoch
        part_size = self._pass_size // self.split_epoch + (part < self._pass_size % self.split_epoch)
        return math.ceil(part_size / (self.batch_size * self.num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        order, bounds = self._epoch_layout(self.epoch)
        mine = range(self.rank, len(bounds) - 1, self.num_replicas)
        for batch in mine[self.start_batch:]:
            yield order[bounds[batch] : bounds[batch + 1]].tolist()

    def state_dict(self, batches_done: int) -> dict:
        """Where to resume: `batches_done` is how many batches of the current epoch were trained on,
        counted from the epoch's start (pass the engine's count: the DataLoader reads ahead)."""
        if not 0 <= batches_done <= len(self):
            raise ValueError(f"batches_done={batches_done} is outside this epoch's 0..{len(self)} batches")
        epoch, done = (self.epoch + 1, 0) if batches_done == len(self) else (self.epoch, batches_done)
        return {"epoch": epoch, "batches_done": done, **self._layout_settings()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`: sets `epoch`, and iterating it yields the batches after `batches_done`."""
        for key, value in self._layout_settings().items():
            if state.get(key) != value:
                raise ValueError(
                    f"the sampler state was saved with {key}={state.get(key)!r}, this run has {value!r}: the rest of "
                    f"epoch {state.get('epoch')} cannot be recomputed; resume with the same data config, batch size, "
                    "world size and sampler flags, or leave the sampler state out to start an epoch afresh"
                )
        self.epoch = self._resume_epoch = int(state["epoch"])
        self._resume_batches = int(state["batches_done"])
        if not 0 <= self._resume_batches < len(self):
            raise ValueError(
                f"the sampler state says {self._resume_batches} batches of epoch {self.epoch} were done, "
                f"but that epoch has {len(self)} batches per rank"
            )

    def _layout_settings(self) -> dict:
        """Everything the batches depend on besides the epoch."""
        return {
            "seed": self.seed, "batch_size": self.batch_size, "num_replicas": self.num_replicas,
            "split_epoch": self.split_epoch, "group_by_length": self.group_by_length,
            "group_window": self.group_window, "source_sizes": self.source_sizes, "ratios": self.ratios,
        }

    def _pass_order(self, pass_index: int) -> np.ndarray:
        """Steps 1 and 2: the mixed, shuffled dataset indices of one pass."""
        rng = np.random.default_rng([self.seed, pass_index])
        pieces = [np.zeros(0, dtype=np.int64)]
        draws = draws_per_pass(self.source_sizes, self.ratios)
        for start, size, (copies, extra) in zip(self._starts, self.source_sizes, draws):
            pieces += [np.arange(start, start + size, dtype=np.int64)] * copies
            if extra:
                pieces.append(start + rng.choice(size, size=extra, replace=False).astype(np.int64))
        order = np.concatenate(pieces)
        rng.shuffle(order)
        return order

    def _epoch_layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(the epoch's indices in global batch order, batch boundaries); global batch j is rank j % R's."""
        if self._cache is None or self._cache[0] != epoch:
            parts = np.array_split(self._pass_order(epoch // self.split_epoch), self.split_epoch)
            order = parts[epoch % self.split_epoch]
            if self.group_by_length:
                order = self._group_by_length(order, epoch)
            sizes = _batch_sizes(len(order), self.batch_size, self.num_replicas)
            self._cache = (epoch, order, np.concatenate(([0], np.cumsum(sizes))))
        return self._cache[1], self._cache[2]

    def _group_by_length(self, order: np.ndarray, epoch: int) -> np.ndarray:
        """Step 4: sort within windows of steps, then shuffle the full steps."""
        step = self.batch_size * self.num_replicas
        window = step * self.group_window
        lengths = self.lengths[order]
        grouped = order.copy()
        for start in range(0, len(order), window):
            stop = start + window
            grouped[start:stop] = order[start:stop][np.argsort(lengths[start:stop], kind="stable")]
        full_steps = len(order) // step
        step_order = np.random.default_rng([self.seed, epoch, 1]).permutation(full_steps)
        grouped[: full_steps * step] = grouped[: full_steps * step].reshape(full_steps, step)[step_order].reshape(-1)
        return grouped


def _batch_sizes(n: int, batch_size: int, num_replicas: int) -> np.ndarray:
    """Step 5: sizes of the global batches in order (step-major), as the module docstring says."""
    step = batch_size * num_replicas
    steps = math.ceil(n / step)
    sizes = np.full(steps * num_replicas, batch_size, dtype=np.int64)
    tail_steps, tail = 1, n - (steps - 1) * step
    if tail < num_replicas and steps >= 2:
        tail_steps, tail = 2, tail + step
    count = tail_steps * num_replicas
    sizes[len(sizes) - count :] = tail // count + (np.arange(count) < tail % count)
    return sizes


def _check_arguments(
    source_sizes: list[int], ratios: list[float], batch_size: int, group_window: int,
    split_epoch: int, num_replicas: int, rank: int, seed: int,
) -> None:
    if not source_sizes or min(source_sizes) < 1:
        raise ValueError(f"every source needs at least one sample, got sizes {source_sizes}")
    if len(ratios) != len(source_sizes) or not all(math.isfinite(ratio) and ratio > 0 for ratio in ratios):
        raise ValueError(f"need one positive ratio per source ({len(source_sizes)}), got {ratios}")
    for name, value in (("batch_size", batch_size), ("group_window", group_window),
                        ("split_epoch", split_epoch), ("num_replicas", num_replicas)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
