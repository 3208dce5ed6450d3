"""What a run starts from, read from its files once, and `--dry_run`'s account of what it would do.

`resolve_inputs` opens, once each, what the flags name: the checkpoint to resume from (or,
fine-tuning, the pre-training checkpoint), the LLaMA folder (resolved and fingerprinted) and
the run's record, and decides whether a resume may go on. The run builds its model from them;
a dry run stops there, also opens the ImageBind file's index, looks at the data (the entry point
hands over data/preflight.py's preview) and prints the plan. Neither reads a weight in full.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.checkpoint import RunRecord, check_resumable, resume_path
from engine.errors import SetupError
from engine.flags import RunSettings, requested_device
from model.files.adapter_checkpoint import AdapterCheckpoint, CheckpointFileError, read_adapter_checkpoint
from model.files.llama_folder import LlamaFolder, open_llama_folder
from model.files.summary import IMAGEBIND, flat_layout
from model.files.tensor_files import load_tensors
from util.distributed import DistributedContext
from util.run_lock import is_live, read_holder

logger = logging.getLogger(__name__)

PLANNED_WORLD_SIZE_ENV = "WORLD_SIZE"  # the launcher's pre-flight says how many processes the job will have


@dataclass
class RunInputs:
    """What the files a run names hold, read once."""

    llama: LlamaFolder
    adapter: AdapterCheckpoint | None
    """The checkpoint the adapter tensors come from (resumed from, or pre-trained), if any."""
    resume_from: Path | None
    imagebind_args: dict[str, Any] | None
    record: RunRecord

    @property
    def resume_state(self) -> dict[str, Any] | None:
        """The resumed checkpoint's contents (optimizer, sampler, ...); None for a fresh start."""
        return self.adapter.contents if self.resume_from is not None and self.adapter is not None else None


def resolve_inputs(args: argparse.Namespace, settings: RunSettings, context: DistributedContext) -> RunInputs:
    """Open the run's checkpoint and LLaMA folder once each; refuse a resume of another run."""
    resume_from = resume_path(args.resume, settings.output_dir)
    adapter = _read_adapter(resume_from or settings.pretrained_path, "--resume" if resume_from else "--pretrained_path")
    llama = open_llama_folder(settings.llama_dir, args.llama_type, adapter.llama_type if adapter else None)
    imagebind_args = settings.imagebind_args
    if imagebind_args is None and adapter is not None:
        imagebind_args = adapter.imagebind_args
    record = RunRecord(settings.phase, imagebind_args, settings.data_config_sha256, context.world_size,
                       settings.precision, base=llama.base_record)
    inputs = RunInputs(llama, adapter, resume_from, imagebind_args, record)
    if inputs.resume_state is not None:
        check_resumable(inputs.resume_state, resume_from, args, record)
        logger.info("%s", describe_start(args, inputs))
    return inputs


def _read_adapter(path: Path | None, flag: str) -> AdapterCheckpoint | None:
    if path is None:
        return None
    try:
        return read_adapter_checkpoint(path)
    except CheckpointFileError as error:  # a file of another kind: say which flag named it
        raise SetupError(f"{flag}: {error}") from None


def planned_context(args: argparse.Namespace) -> DistributedContext:
    """This process standing for the job a dry run plans: the device it would use, and the number
    of processes the launcher says it will start (1 when run by hand)."""
    return DistributedContext(world_size=int(os.environ.get(PLANNED_WORLD_SIZE_ENV, "1")),
                              device=torch.device(requested_device(args)))


def check_imagebind_file(path: Path) -> int:
    """The number of tensors in the ImageBind file (its index only); another kind of file is an error."""
    try:
        state = load_tensors(path)
    except Exception as error:
        raise SetupError(f"--imagebind_path {path} cannot be read ({type(error).__name__}): it may be incomplete "
                         "or not a torch file") from None
    if flat_layout(state) != IMAGEBIND:
        raise SetupError(f"--imagebind_path {path} does not hold ImageBind's weights (imagebind_huge.pth) but "
                         f"{flat_layout(state)} tensors")
    return len(state)


def describe_plan(args: argparse.Namespace, settings: RunSettings, inputs: RunInputs, imagebind_tensors: int,
                  data: Any) -> list[str]:
    """--dry_run's report: one fact a line. `data` is the entry point's DataPreview."""
    llama, position = inputs.llama, describe_start(args, inputs)
    lines = [
        f"dry run of {settings.phase}: {inputs.record.world_size} process(es) on {settings.device.type}, "
        f"precision {settings.precision}",
        f"LLaMA: {llama.llama_type} at {llama.model_dir} (fingerprint {llama.base_record['fingerprint']})",
        f"ImageBind: {settings.imagebind_path} ({imagebind_tensors} tensors)",
        position,
    ]
    samples = 0.0
    for source in data.train:
        samples += source.entries * source.ratio
        lines.append(_describe_source(source))
    for source in data.val or []:
        lines.append("held-out " + _describe_source(source))
    per_epoch = samples / settings.split_epoch
    processes = inputs.record.world_size
    steps = math.ceil(math.ceil(per_epoch / (args.batch_size * processes)) / args.accum_iter)
    lines.append(f"each epoch: about {per_epoch:,.0f} samples in {steps:,} optimizer steps of {args.batch_size} "
                 f"x {args.accum_iter} x {processes} samples; {args.epochs} epochs; peak lr {settings.lr:.3e}")
    holder = read_holder(settings.output_dir)
    lines.append(f"output: {settings.output_dir}" + (
        f" (in use by process {holder.pid} on {holder.host}: this launch would be refused)"
        if holder is not None and is_live(holder) else ""))
    return lines


def describe_start(args: argparse.Namespace, inputs: RunInputs) -> str:
    """Where the run starts: afresh, from a pre-training checkpoint, or resuming (and where)."""
    state = inputs.resume_state
    if state is not None:
        return (f"resumes from {inputs.resume_from}: {state['global_step']} optimizer steps done, "
                f"continues in epoch {int(state['epoch']) + 1} of {args.epochs}")
    if inputs.adapter is not None:
        return f"starts afresh from {inputs.adapter.path}"
    return "starts afresh: the adapter initialised as the published code does"


def _describe_source(source: Any) -> str:
    count = f"about {source.entries:,}" if source.estimated else f"{source.entries:,}"
    images = (f"; images of its first entries: {source.images_opened} of {source.images_tried} opened"
              if source.images_tried else "")
    problems = f"; bad among them: {'; '.join(source.problems[:3])}" if source.problems else ""
    return f"data: {source.path}: {count} entries, ratio {source.ratio:g}{images}{problems}"
