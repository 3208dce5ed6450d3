"""What a run derives from its parsed flags: resolved paths, device, precision, learning rate.

The parsed namespace is never written to (the reference stored `args.lr`, `args.distributed` and
more into it); `derive_settings` reads it and the process's place in the run and returns a frozen
`RunSettings`, checking every flag and path first so that mistakes surface before any loading,
with a message that names the flag.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from engine.errors import SetupError
from engine.precision import check_precision, default_precision
from util.distributed import DistributedContext
from util.lr_schedule import absolute_lr, check_schedule

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGEBIND_ENV = "IMAGEBIND_PATH"
# Where the reference keeps the encoder's weights (relative to its code folder); ours: in the repository.
DEFAULT_IMAGEBIND_PATH = REPO_ROOT / "ckpts" / "imagebind_huge.pth"
IMAGEBIND_HUGE_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"


@dataclass(frozen=True)
class RunSettings:
    """Everything a run needs besides the flags themselves, resolved and checked."""

    phase: str
    device: torch.device
    precision: str
    """"bf16", "fp16" or "fp32" (see engine/precision.py)."""
    output_dir: Path
    log_dir: Path
    llama_dir: Path
    imagebind_path: Path
    imagebind_args: dict[str, Any] | None
    """From --imagebind_config; None: the checkpoint's record, else ImageBind-Huge."""
    effective_batch_size: int
    """batch_size x accum_iter x world size."""
    lr: float
    """The absolute peak learning rate: --lr, else blr x effective batch / 256."""


def requested_device(args: argparse.Namespace) -> str:
    """--device, else cuda when a GPU is visible, else cpu (util.distributed picks the GPU index)."""
    if args.device:
        return args.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _require_at_least(args: argparse.Namespace, names: tuple[str, ...], minimum: int = 1) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise SetupError(f"--{name} {value} must be at least {minimum}")


def check_numbers(args: argparse.Namespace) -> None:
    """Reject flag values that cannot work, naming the flag."""
    _require_at_least(args, ("batch_size", "epochs", "accum_iter", "max_words", "print_freq", "save_freq",
                             "keep_last", "pad_to_multiple"))
    _require_at_least(args, ("save_interval_steps", "num_workers", "seed"), minimum=0)
    if getattr(args, "split_epoch", 1) < 1:
        raise SetupError(f"--split_epoch {args.split_epoch} must be at least 1")
    if not 0 <= args.start_epoch < args.epochs:
        raise SetupError(f"--start_epoch {args.start_epoch} must lie in [0, --epochs {args.epochs})")
    if not 0.0 <= args.max_bad_fraction <= 1.0:
        raise SetupError(f"--max_bad_fraction {args.max_bad_fraction} must lie between 0 and 1")
    if args.weight_decay < 0:
        raise SetupError(f"--weight_decay {args.weight_decay} must not be negative")
    if args.clip_grad is not None and args.clip_grad <= 0:
        raise SetupError(f"--clip_grad {args.clip_grad} must be positive (leave it out for no clipping)")


def existing_file(path: str | os.PathLike, flag: str, what: str) -> Path:
    """`path` as a Path; a SetupError naming `flag` and saying what the file is when there is none."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SetupError(f"{flag} {path}: no such file ({what})")
    return path


def imagebind_weights_path(args: argparse.Namespace) -> Path:
    """--imagebind_path, else $IMAGEBIND_PATH, else ckpts/imagebind_huge.pth in this repository."""
    given = args.imagebind_path or os.environ.get(IMAGEBIND_ENV)
    path = Path(given).expanduser() if given else DEFAULT_IMAGEBIND_PATH
    if not path.is_file():
        source = "--imagebind_path" if args.imagebind_path else f"${IMAGEBIND_ENV}" if given else "the default path"
        raise SetupError(
            f"ImageBind weights not found at {path} ({source}): download imagebind_huge.pth "
            f"({IMAGEBIND_HUGE_URL}) to {DEFAULT_IMAGEBIND_PATH}, or point --imagebind_path or ${IMAGEBIND_ENV} at it"
        )
    return path


def read_imagebind_config(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The ImageBindModel keyword arguments in a YAML or JSON file (None: no file given)."""
    if path is None:
        return None
    path = existing_file(path, "--imagebind_config", "a YAML or JSON file of ImageBindModel arguments")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise SetupError(f"--imagebind_config {path}: not valid YAML or JSON: {error}") from error
    if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
        raise SetupError(f"--imagebind_config {path}: expected a mapping of ImageBindModel argument names to values")
    return config


def _llama_dir(args: argparse.Namespace) -> Path:
    llama_dir = Path(args.llama_path).expanduser()
    if not llama_dir.is_dir():
        raise SetupError(f"--llama_path {llama_dir}: no such folder (it holds tokenizer.model and one folder per model)")
    return llama_dir


def derive_settings(args: argparse.Namespace, phase: str, context: DistributedContext) -> RunSettings:
    """Check the flags and the files they name; resolve defaults that depend on the machine."""
    check_numbers(args)
    llama_dir = _llama_dir(args)
    existing_file(args.data_config, "--data_config", "the YAML data config")
    if args.val_data_config is not None:
        existing_file(args.val_data_config, "--val_data_config", "the YAML data config of held-out data")
    precision = check_precision(args.precision or default_precision(context.device), context.device)
    effective_batch_size = args.batch_size * args.accum_iter * context.world_size
    try:
        lr = args.lr if args.lr is not None else absolute_lr(args.blr, effective_batch_size)
        check_schedule(lr, args.min_lr, args.warmup_epochs, args.epochs)
    except ValueError as error:  # the message names the flag
        raise SetupError(str(error)) from error
    output_dir = Path(args.output_dir).expanduser()
    return RunSettings(
        phase=phase,
        device=context.device,
        precision=precision,
        output_dir=output_dir,
        log_dir=Path(args.log_dir).expanduser() if args.log_dir else output_dir,
        llama_dir=llama_dir,
        imagebind_path=imagebind_weights_path(args),
        imagebind_args=read_imagebind_config(args.imagebind_config),
        effective_batch_size=effective_batch_size,
        lr=lr,
    )
