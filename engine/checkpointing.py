"""What a training checkpoint holds, writing it from every rank's state, and putting a run back.

A checkpoint holds only what cannot be rebuilt from the files the run started from:

    model            the released layout (model.state_dict_released()): a file that loads as
                     7B-pretrained.pth / 7B.pth do, and whose trainable part is this run's state
    optimizer        AdamW's state, of the trainable tensors only (only they are in the optimizer)
    scaler           the fp16 loss scaler's state ({} when it is off)
    epoch, step_in_epoch, global_step
                     where to continue: `step_in_epoch` optimizer steps of `epoch` are done
                     (at an epoch's end: the next epoch, step 0)
    sampler          the batch sampler's position (data order, batches done)
    rng              each rank's random generators, by rank
    epoch_stats      each rank's sums over the epoch so far, by rank (the epoch's log line)
    args             the flags, as plain values; phase, params (params.json), llama_type,
                     imagebind_args, data_config_sha256, world_size: what resuming compares
    base             the LLaMA trained on, with a fingerprint (model/base_record.py): what
                     fine-tuning, resuming and model.load check the loaded base against
    format_version

Rank 0 writes through util.checkpoint (a temporary file renamed into place), so a run killed while
writing leaves the previous checkpoint whole. Every rank reads the whole file when resuming.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engine.data_source import ResumableBatchSampler
from engine.errors import ResumeMismatchError
from engine.running_stats import RunningStats
from engine.train_loop import Position
from util.checkpoint import prune_checkpoints, save_checkpoint
from util.distributed import DistributedContext, barrier, gather_from_ranks
from util.rng_state import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a (small) file's bytes: the data config's contents, compared on resume."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """What identifies a run beyond its flags: the phase and the contents of the files they name."""

    phase: str
    params: dict[str, Any]
    """params.json of the LLaMA model trained on."""
    llama_type: str
    imagebind_args: dict[str, Any] | None
    """ImageBindModel arguments; None: ImageBind-Huge."""
    data_config_sha256: str
    world_size: int
    base: dict[str, Any] | None = None
    """The LLaMA trained on: model.base_record.describe_base (llama_type, params.json, fingerprint)."""
    precision: str | None = None
    """"bf16", "fp16" or "fp32": an unset --precision depends on the machine, so it is recorded."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Checkpointer:
    """Writes the run's checkpoints into `output_dir` (rank 0), every rank contributing its state."""

    def __init__(self, output_dir: Path, keep_last: int | None, context: DistributedContext, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, sampler: ResumableBatchSampler,
                 stats: RunningStats, args: argparse.Namespace, record: RunRecord):
        self.output_dir = output_dir
        self.keep_last = keep_last
        self.context = context
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.sampler = sampler
        self.stats = stats
        self.args = dict(vars(args))
        self.record = record

    def save(self, position: Position, batches_done: int, epoch_file: int | None = None) -> Path | None:
        """Write checkpoint-last.pth (and checkpoint-<epoch_file>.pth when given) for `position`.

        `batches_done`: batches of the sampler's current epoch trained on (all of them at an
        epoch's end). A collective: every rank calls it. Returns the path written on rank 0.
        """
        rank_states = gather_from_ranks({"rng": capture_rng_state(), "epoch_stats": self.stats.state_dict()},
                                        self.context)
        path = None
        if self.context.is_main:
            contents = {
                "format_version": FORMAT_VERSION,
                "model": self.model.state_dict_released(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "epoch": position.epoch,
                "step_in_epoch": position.step_in_epoch,
                "global_step": position.global_step,
                "sampler": self.sampler.state_dict(batches_done),
                "rng": [state["rng"] for state in rank_states],
                "epoch_stats": [state["epoch_stats"] for state in rank_states],
                "args": self.args,
                **self.record.as_dict(),
            }
            self.output_dir.mkdir(parents=True, exist_ok=True)
            path = save_checkpoint(contents, self.output_dir, epoch=epoch_file)
            prune_checkpoints(self.output_dir, self.keep_last, protect=path)
            logger.info("saved %s (resumes at epoch %d step %d; global step %d)", path, position.epoch,
                        position.step_in_epoch, position.global_step)
        barrier(self.context)  # nobody moves on (or exits) before the file is complete
        return path


def restore_training_state(checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer,
                           scaler: torch.amp.GradScaler, sampler: ResumableBatchSampler, stats: RunningStats,
                           context: DistributedContext) -> Position:
    """Load the optimizer, scaler, sampler and epoch sums; returns where training continues.

    The model's tensors were loaded when it was built (its released layout is an adapter
    checkpoint); the random generators are restored last, by restore_rng.
    """
    optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    try:
        sampler.load_state_dict(checkpoint["sampler"])
    except ValueError as error:  # the batches depend on settings that changed (--resume_force let them)
        raise ResumeMismatchError(f"cannot continue the data order of the checkpoint: {error}") from error
    position = Position(int(checkpoint["epoch"]), int(checkpoint["step_in_epoch"]), int(checkpoint["global_step"]))
    if position.step_in_epoch > 0:
        stats.load_state_dict(checkpoint["epoch_stats"][context.rank])
    return position


def restore_rng(checkpoint: dict[str, Any], context: DistributedContext) -> None:
    """Put this rank's random generators back as they were when the checkpoint was written."""
    states = checkpoint["rng"]
    if len(states) != context.world_size:
        logger.warning("the checkpoint holds random states of %d ranks, this run has %d; they are not restored",
                       len(states), context.world_size)
        return
    restore_rng_state(states[context.rank])
