"""The flags of main_pretrain.py and main_finetune.py, and the settings a run derives from them.

The flags are the published reference's (same names, mostly the same defaults) plus what this
project adds: the ImageBind files, precision, resuming, checkpoint policy, validation data, the
bad-sample policy, compilation and activation checkpointing. Where a default differs from the
reference's, the help says so. `HARMLESS_ON_RESUME`, beside them, names the flags that may change
between a run and its resumption without changing the result (engine/checkpoint.py compares).

Nothing writes into the parsed namespace afterwards (the reference stored `args.lr`,
`args.distributed` and more into it): `derive_settings` reads it and the process's place in the
run and returns a frozen `RunSettings`, checking every flag and path first so that mistakes
surface before any loading, with a message that names the flag.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from engine.errors import SetupError
from engine.precision import PRECISIONS, check_precision, default_precision
from model import default_device
from model.layout import check_phase
from util.distributed import DistributedContext
from util.lr_schedule import absolute_lr, check_schedule

RESUME_AUTO = "auto"
RESUME_NONE = "none"

# The reference's per-phase defaults; the launchers pass the published recipe on top of these.
_PHASE_DEFAULTS = {
    "pretrain": {"max_words": 96, "save_freq": 2, "description": "ImageBind-LLM pre-training (bridge, prefix, gates)"},
    "finetune": {"max_words": 512, "save_freq": 5, "description": "ImageBind-LLM fine-tuning (norms, biases, LoRA)"},
}

# Flags whose change between a run and its resumption does not change what is computed.
HARMLESS_ON_RESUME = frozenset({
    "output_dir", "log_dir", "num_workers", "pin_mem", "print_freq", "save_freq", "keep_last",
    "save_interval_steps", "log_step_losses", "resume", "resume_force", "device", "dist_url",
    "world_size", "local_rank", "start_epoch", "val_data_config", "max_bad_fraction", "on_bad_sample",
    "pad_to_multiple", "compile", "activation_checkpointing", "force_lock", "dry_run", "eval_config",
    "eval_freq", "eval_limit",
})


def _add_run_shape(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("batch and schedule")
    group.add_argument("--batch_size", default=64, type=int,
                       help="batch size per GPU (effective batch size is batch_size * accum_iter * number of GPUs)")
    group.add_argument("--epochs", default=400, type=int,
                       help="epochs to train (with --split_epoch, an epoch is that fraction of a pass over the data)")
    group.add_argument("--accum_iter", default=1, type=int,
                       help="micro-batches per optimizer step (a larger effective batch under memory constraints); "
                            "gradients are all-reduced only on the last one")
    group.add_argument("--start_epoch", default=0, type=int, metavar="N",
                       help="epochs already done before a fresh run starts (a resumed run continues where its "
                            "checkpoint stopped)")


def _add_model(parser: argparse.ArgumentParser, phase: str) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--llama_path", required=True, type=str,
                       help="LLaMA folder: tokenizer.model beside one folder per model (params.json, consolidated.NN.pth)")
    group.add_argument("--llama_type", default=None, type=str,
                       help="model folder inside --llama_path (e.g. 7B, 7B_chinese); default: the base a checkpoint "
                            "records, else the only model folder, else 7B_chinese (the reference's default)")
    group.add_argument("--imagebind_path", default=None, type=str,
                       help="ImageBind weights; default $IMAGEBIND_PATH, else ckpts/imagebind_huge.pth in this repository")
    group.add_argument("--imagebind_config", default=None, type=str,
                       help="YAML or JSON file of ImageBindModel arguments for an encoder other than ImageBind-Huge")
    group.add_argument("--max_words", default=_PHASE_DEFAULTS[phase]["max_words"], type=int,
                       help="longest token sequence (prompt + answer); longer samples are cut")
    if phase == "finetune":
        group.add_argument("--pretrained_path", required=True, type=str,
                           help="pre-training checkpoint in the released layout (7B-pretrained.pth or one of ours)")
    group.add_argument("--precision", default=None, choices=PRECISIONS,
                       help="autocast dtype and the frozen weights' dtype; default bf16 on GPUs that support it, "
                            "fp16 (with loss scaling) on older GPUs, fp32 on the CPU")


def _add_optimizer(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("optimizer (AdamW, betas 0.9/0.95; no weight decay on biases and 1-D tensors)")
    group.add_argument("--weight_decay", type=float, default=0.05,
                       help="AdamW's decoupled weight decay on matrices (the launchers pass the recipe's)")
    group.add_argument("--lr", type=float, default=None, metavar="LR",
                       help="absolute learning rate; default blr * effective batch size / 256")
    group.add_argument("--blr", type=float, default=1e-3, metavar="LR",
                       help="base learning rate: absolute lr = blr * effective batch size / 256")
    group.add_argument("--min_lr", type=float, default=0.0, metavar="LR",
                       help="where the half-cycle cosine ends")
    group.add_argument("--warmup_epochs", type=float, default=40, metavar="N",
                       help="epochs of linear warm-up (fractions allowed)")
    group.add_argument("--clip_grad", type=float, default=None, metavar="NORM",
                       help="clip the gradients' total norm to this (default: no clipping; the norm is reported anyway)")


def _add_data(parser: argparse.ArgumentParser, phase: str) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--data_config", required=True, type=str, help="YAML data config (META: a list of meta files)")
    group.add_argument("--val_data_config", default=None, type=str,
                       help="YAML data config of held-out data whose loss is logged after every epoch")
    group.add_argument("--eval_config", default=None, type=str,
                       help="evaluation YAML (evaluation/eval_config.py): benchmarks answered and scored every "
                            "--eval_freq epochs, their metrics logged beside the losses (image benchmarks: "
                            "training keeps only ImageBind's vision branch)")
    group.add_argument("--eval_freq", default=1, type=int, help="epochs between evaluations (with --eval_config)")
    group.add_argument("--eval_limit", default=None, type=int,
                       help="evaluate only the first N samples of each benchmark (default: all)")
    if phase == "pretrain":
        group.add_argument("--split_epoch", type=int, default=1,
                           help="cut each pass over the data into this many epochs (the published recipe uses 50)")
    group.add_argument("--num_workers", default=10, type=int,
                       help="DataLoader worker processes per GPU process (0: load in the training process)")
    group.add_argument("--pin_mem", action="store_true",
                       help="accepted, ignored: batches are pinned by default (the published command lines pass it)")
    group.add_argument("--no_pin_mem", action="store_false", dest="pin_mem",
                       help="do not pin batches in page-locked memory (pinning speeds up copies to the GPU)")
    parser.set_defaults(pin_mem=True)
    group.add_argument("--max_bad_fraction", type=float, default=0.01,
                       help="stop when more than this fraction of the samples seen were bad (missing image, ...)")
    group.add_argument("--on_bad_sample", choices=("skip", "error"), default="skip",
                       help="skip: drop and count bad samples; error: stop at the first, naming its file and row")
    group.add_argument("--group_by_length", action="store_true",
                       help="batch samples of similar length together (less padding)")
    group.add_argument("--pad_to_multiple", type=int, default=1,
                       help="pad each batch's sequence length up to a multiple of this")


def _add_output(parser: argparse.ArgumentParser, phase: str) -> None:
    group = parser.add_argument_group("output, checkpoints and resuming")
    group.add_argument("--output_dir", default="./output", help="where checkpoints, log.txt and train.log go")
    group.add_argument("--log_dir", default=None, help="TensorBoard folder; default --output_dir")
    group.add_argument("--print_freq", default=10, type=int, help="a progress line every this many optimizer steps")
    group.add_argument("--save_freq", default=_PHASE_DEFAULTS[phase]["save_freq"], type=int,
                       help="write checkpoint-<epoch>.pth after epochs N, 2N, ... and the last one (epochs count "
                            "from 1: checkpoint-N.pth holds the state after epoch N; checkpoint-last.pth is written "
                            "after every epoch)")
    group.add_argument("--keep_last", default=None, type=int, metavar="N",
                       help="keep only the newest N checkpoint-<epoch>.pth files (default: keep them all)")
    group.add_argument("--save_interval_steps", default=0, type=int, metavar="N",
                       help="also write checkpoint-last.pth every N optimizer steps (0: at epoch ends only)")
    group.add_argument("--resume", default=RESUME_NONE, metavar="auto|none|PATH",
                       help="auto: continue from the newest checkpoint in --output_dir (none there: start afresh); "
                            "PATH: from that file; none: start afresh (the launchers pass auto)")
    group.add_argument("--force_lock", action="store_true",
                       help="start even though run.lock says another job uses --output_dir (for a lock known to be "
                            "wrong: a job on another host that is gone, before the lock goes stale)")
    group.add_argument("--resume_force", action="store_true",
                       help="resume even though the model, phase or data settings changed")
    group.add_argument("--dry_run", action="store_true",
                       help="check everything the run needs (flags, the data config and its first entries and "
                            "images, the LLaMA folder, the ImageBind file, checkpoints, the output folder, resuming) "
                            "and print what it would do; loads no weights, trains nothing, writes nothing")
    group.add_argument("--log_step_losses", action="store_true",
                       help="debugging: write every optimizer step's loss to step_losses.jsonl (reads the loss each step)")


def _add_speed(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speed and memory (the same losses, to rounding)")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile each transformer block on its own (one graph serves every layer) and "
                            "ImageBind's vision blocks; pass --pad_to_multiple 32 (pre-training) or 128 (fine-tuning) "
                            "so that only a few sequence lengths compile. The first steps of each length are slow")
    group.add_argument("--activation_checkpointing", action="store_true",
                       help="keep only each LLaMA layer's input for backward and run the layer again there: much "
                            "less activation memory for one more forward pass (fine-tuning 7B on a 24 GB card)")


def _add_devices(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("devices and processes (torchrun or SLURM set ranks through the environment)")
    group.add_argument("--device", default=None, help="cuda or cpu; default cuda when a GPU is visible, else cpu")
    group.add_argument("--seed", default=0, type=int,
                       help="seeds the adapter's initialisation, the data order and every augmentation")
    group.add_argument("--world_size", default=1, type=int,
                       help="accepted, ignored: the launcher's environment says how many processes there are")
    group.add_argument("--local_rank", "--local-rank", default=-1, type=int,
                       help="accepted, ignored: LOCAL_RANK from the launcher's environment decides")
    group.add_argument("--dist_url", default="env://", help="how the processes find each other (torch.distributed)")


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag's default once: added unless its help already says it, the flag is required
    (then it says so) or a switch, or there is no default to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return f"{text} (required)"
        if "default" in text or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def build_parser(phase: str) -> argparse.ArgumentParser:
    """The argument parser of `phase` ("pretrain" or "finetune")."""
    check_phase(phase)
    parser = argparse.ArgumentParser(description=_PHASE_DEFAULTS[phase]["description"], formatter_class=_HelpFormatter)
    _add_run_shape(parser)
    _add_model(parser, phase)
    _add_optimizer(parser)
    _add_data(parser, phase)
    _add_output(parser, phase)
    _add_speed(parser)
    _add_devices(parser)
    return parser


# -- what a run derives from the flags ---------------------------------------------------------------

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
    pretrained_path: Path | None
    """Fine-tuning: the pre-training checkpoint it starts from; pre-training: None."""
    data_config_sha256: str
    split_epoch: int
    """Epochs per pass over the data: --split_epoch when pre-training, 1 when fine-tuning (no such flag)."""
    """The data config's contents, compared on resume (the same file name may hold other data)."""


def requested_device(args: argparse.Namespace) -> str:
    """--device, else cuda when a GPU is visible, else cpu (util.distributed picks the GPU index)."""
    if args.device:
        return args.device
    return default_device().type


def _require_at_least(args: argparse.Namespace, names: tuple[str, ...], minimum: int = 1) -> None:
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise SetupError(f"--{name} {value} must be at least {minimum}")


def check_numbers(args: argparse.Namespace) -> None:
    """Reject flag values that cannot work, naming the flag."""
    _require_at_least(args, ("batch_size", "epochs", "accum_iter", "max_words", "print_freq", "save_freq",
                             "keep_last", "pad_to_multiple", "eval_freq"))
    _require_at_least(args, ("save_interval_steps", "num_workers", "seed"), minimum=0)
    if getattr(args, "split_epoch", 1) < 1:
        raise SetupError(f"--split_epoch {args.split_epoch} must be at least 1")
    if args.eval_limit is not None and args.eval_limit < 1:
        raise SetupError(f"--eval_limit {args.eval_limit} must be at least 1 (or left out: every sample)")
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


def _pretrained_path(args: argparse.Namespace, phase: str) -> Path | None:
    if phase != "finetune":
        return None
    return existing_file(args.pretrained_path, "--pretrained_path",
                         "a pre-training checkpoint: 7B-pretrained.pth or a checkpoint-*.pth of a pre-training run")


def derive_settings(args: argparse.Namespace, phase: str, context: DistributedContext) -> RunSettings:
    """Check the flags and the files they name; resolve defaults that depend on the machine."""
    check_numbers(args)
    llama_dir = _llama_dir(args)
    data_config = existing_file(args.data_config, "--data_config", "the YAML data config")
    if args.val_data_config is not None:
        existing_file(args.val_data_config, "--val_data_config", "the YAML data config of held-out data")
    if args.eval_config is not None:
        existing_file(args.eval_config, "--eval_config", "the evaluation YAML")
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
        split_epoch=getattr(args, "split_epoch", 1),
        lr=lr,
        pretrained_path=_pretrained_path(args, phase),
        data_config_sha256=hashlib.sha256(data_config.read_bytes()).hexdigest(),
    )
