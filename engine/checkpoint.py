"""A training checkpoint: what it holds, writing it from every rank's state, and resuming from one.

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
    args             the flags, as plain values
    phase, imagebind_args, data_config_sha256, world_size, precision, base
                     the run's record (RunRecord): what resuming compares besides the flags; `base`
                     is the LLaMA trained on, with a fingerprint (model/files/base_record.py), which
                     fine-tuning and model.load check too
    format_version   1; a file of another version is refused

Rank 0 writes through util.checkpoint (a temporary file renamed into place), so a run killed while
writing leaves the previous checkpoint whole.

Resuming. `--resume auto` takes the output folder's newest checkpoint (none there: a fresh start),
so that a relaunched job continues where it stopped. Continuing must not quietly mix two runs: the
saved flags and record are compared with the new ones. A difference that changes what is computed
refuses the resume with the list of differences (`--resume_force` continues anyway); harmless ones
(engine/flags.py's HARMLESS_ON_RESUME) are only listed in the log. The file is read once, by
model/files/adapter_checkpoint.py, which the model's tensors come from too.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from engine.data_source import ResumableBatchSampler
from engine.errors import ResumeMismatchError, SetupError
from engine.flags import HARMLESS_ON_RESUME, RESUME_AUTO, RESUME_NONE
from engine.running_stats import RunningStats
from engine.train_loop import Position
from model.files.base_record import base_differences
from util.checkpoint import find_latest_checkpoint, prune_checkpoints, save_checkpoint
from util.distributed import DistributedContext, barrier, gather_from_ranks
from util.rng_state import capture_rng_state, restore_rng_state
from util.run_args import ArgChange, compare_args, format_arg_changes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunRecord:
    """What identifies a run beyond its flags: the phase and what the files it names hold."""

    phase: str
    imagebind_args: dict[str, Any] | None
    """ImageBindModel arguments; None: ImageBind-Huge."""
    data_config_sha256: str
    world_size: int
    precision: str
    """"bf16", "fp16" or "fp32": an unset --precision depends on the machine, so it is recorded."""
    base: dict[str, Any]
    """The LLaMA trained on: LlamaFolder.base_record (llama_type, params.json, fingerprint)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- writing ---------------------------------------------------------------------------------------

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
            logger.info("saved %s: %s", path, position.describe())
        barrier(self.context)  # nobody moves on (or exits) before the file is complete
        return path


# -- resuming --------------------------------------------------------------------------------------

def resume_path(resume: str, output_dir: Path) -> Path | None:
    """The checkpoint `--resume` names: auto -> the newest in output_dir (or None), none -> None."""
    if resume == RESUME_NONE:
        return None
    if resume == RESUME_AUTO:
        found = find_latest_checkpoint(output_dir)
        if found is None:
            logger.info("--resume auto: no checkpoint in %s, starting afresh", output_dir)
        return found
    path = Path(resume).expanduser()
    if not path.is_file():
        raise SetupError(f"--resume {path}: no such checkpoint file (pass auto to continue from --output_dir's newest)")
    return path


class _RecordChange(ArgChange):
    """A difference in the run's record (not a flag), worded without the flag's dashes."""

    def __str__(self) -> str:
        return f"{self.name}: {self.saved!r} -> {self.new!r}"


class _BaseChange(ArgChange):
    """One way the loaded LLaMA differs from the one the checkpoint records (its `name`)."""

    def __str__(self) -> str:
        return f"LLaMA base: {self.name}"


def check_resumable(checkpoint: Mapping[str, Any], source: Path, args: argparse.Namespace, record: RunRecord) -> None:
    """Refuse (ResumeMismatchError) when `checkpoint` belongs to a different run; see the module docstring."""
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise ResumeMismatchError(
            f"{source} is not a training checkpoint of this version (format_version {version!r}, expected "
            f"{FORMAT_VERSION}): to start from a released or adapter-only file, fine-tune with --pretrained_path"
        )
    if checkpoint["phase"] != record.phase:
        raise ResumeMismatchError(
            f"{source} was written by {checkpoint['phase']} but this is {record.phase}; a new phase starts from "
            f"a checkpoint with --pretrained_path, in an output folder of its own"
        )
    blocking, harmless = compare_args(checkpoint["args"], vars(args), HARMLESS_ON_RESUME)
    # The base is compared by what it computes: the same weights in another layout are the same base.
    new_record = {key: value for key, value in record.as_dict().items() if key != "base"}
    saved_record = {key: checkpoint[key] for key in new_record}
    blocking += [_RecordChange(change.name, change.saved, change.new)
                 for change in compare_args(saved_record, new_record, harmless=())[0]]
    blocking += [_BaseChange(difference, checkpoint["base"], record.base)
                 for difference in base_differences(checkpoint["base"], record.base)]
    if blocking and not args.resume_force:
        raise ResumeMismatchError(
            format_arg_changes(blocking, harmless, source)
            + "\nresume only with the settings it was written with, use another --output_dir for a new run, "
            "or pass --resume_force to continue anyway"
        )
    if blocking or harmless:
        log = logger.warning if blocking else logger.info
        log("%s%s", format_arg_changes(blocking, harmless, source), "\n(--resume_force: continuing)" if blocking else "")


def restore_training_state(checkpoint: Mapping[str, Any], optimizer: torch.optim.Optimizer,
                           scaler: torch.amp.GradScaler, sampler: ResumableBatchSampler, stats: RunningStats,
                           context: DistributedContext) -> Position:
    """Load the optimizer, scaler, sampler, epoch sums and this rank's random generators; returns
    where training continues. (The model's tensors were loaded when it was built: the released
    layout inside a checkpoint is an adapter checkpoint.)"""
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
    _restore_rng(checkpoint["rng"], context)
    return position


def _restore_rng(states: list, context: DistributedContext) -> None:
    """Put this rank's random generators back as they were when the checkpoint was written."""
    if len(states) != context.world_size:
        logger.warning("the checkpoint holds random states of %d ranks, this run has %d; they are not restored",
                       len(states), context.world_size)
        return
    restore_rng_state(states[context.rank])
