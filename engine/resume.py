"""Which checkpoint a run continues from, and whether it may.

`--resume auto` takes the output folder's newest checkpoint (none there: a fresh start), so that a
relaunched job continues where it stopped. Continuing must not quietly mix two different runs:
the saved flags and the saved record (phase, params.json, ImageBind arguments, the data config's
contents, the number of processes, the precision, the LLaMA base) are compared with the new ones. A difference that changes
what is computed refuses the resume with the list of differences (`--resume_force` continues
anyway); harmless ones (engine/arguments.py's HARMLESS_ON_RESUME) are only listed in the log.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Mapping

from engine.arguments import HARMLESS_ON_RESUME, RESUME_AUTO, RESUME_NONE
from engine.checkpointing import FORMAT_VERSION, RunRecord
from engine.errors import ResumeMismatchError, SetupError
from model.base_record import base_differences
from util.checkpoint import find_latest_checkpoint
from util.run_args import ArgChange, compare_args, format_arg_changes

logger = logging.getLogger(__name__)


class _RecordChange(ArgChange):
    """A difference in the run's record (not a flag), worded without the flag's dashes."""

    def __str__(self) -> str:
        return f"{self.name}: {self.saved!r} -> {self.new!r}"


class _BaseChange(ArgChange):
    """One way the loaded LLaMA differs from the one the checkpoint records (its `name`)."""

    def __str__(self) -> str:
        return f"LLaMA base: {self.name}"


def resume_path(resume: str | None, output_dir: Path) -> Path | None:
    """The checkpoint `--resume` names: auto -> the newest in output_dir (or None), none -> None."""
    if resume is None or resume == RESUME_NONE:
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


def check_resumable(checkpoint: Mapping[str, Any], source: Path, args: argparse.Namespace, record: RunRecord) -> None:
    """Refuse (ResumeMismatchError) when `checkpoint` belongs to a different run; see the module docstring."""
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION or "args" not in checkpoint:
        raise ResumeMismatchError(
            f"{source} is not a training checkpoint of this version (format_version {version!r}, expected "
            f"{FORMAT_VERSION}): to start from a released or adapter-only file, fine-tune with --pretrained_path"
        )
    if checkpoint.get("phase") != record.phase:
        raise ResumeMismatchError(
            f"{source} was written by {checkpoint.get('phase')} but this is {record.phase}; a new phase starts from "
            f"a checkpoint with --pretrained_path, in an output folder of its own"
        )
    blocking, harmless = compare_args(checkpoint["args"], vars(args), HARMLESS_ON_RESUME)
    new_record = record.as_dict()
    # The base is compared by what it computes (the same weights in another layout are the same base);
    # checkpoints written before the base was recorded have none to compare.
    new_base, saved_base = new_record.pop("base"), checkpoint.get("base")
    # An entry the record gained after the checkpoint was written has nothing saved to compare with.
    new_record = {key: value for key, value in new_record.items() if key in checkpoint}
    saved_record = {key: checkpoint[key] for key in new_record}
    blocking += [_RecordChange(change.name, change.saved, change.new)
                 for change in compare_args(saved_record, new_record, harmless=())[0]]
    if saved_base is not None:
        blocking += [_BaseChange(difference, saved_base, new_base)
                     for difference in base_differences(saved_base, new_base)]
    if blocking and not args.resume_force:
        raise ResumeMismatchError(
            format_arg_changes(blocking, harmless, source)
            + "\nresume only with the settings it was written with, use another --output_dir for a new run, "
            "or pass --resume_force to continue anyway"
        )
    if blocking or harmless:
        log = logger.warning if blocking else logger.info
        log("%s%s", format_arg_changes(blocking, harmless, source), "\n(--resume_force: continuing)" if blocking else "")
