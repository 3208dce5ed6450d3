"""The training step's throughput at the real 7B shape (issue 6), printed as one JSON line.

    python -m bench.throughput --phase pretrain --batch_size 64 --compile
    python -m bench.throughput --phase finetune --batch_size 4 --compile --activation_checkpointing

What runs is the engine's code: prepare_for_training (ImageBind's vision branch only, --compile,
--activation_checkpointing), the TrainingModule, AdamW (fused on CUDA), a training run's precision
and Trainer.train_epoch, on a model with random weights (bench/random_model.py) and batches
made by data/'s collate function and batch sampler (bench/workload.py). A run has three parts:

1. The loss check (--no_loss_check skips it), on the first warm-up batch: loss and gradient norm
   of the plain path (eager, every batch tensor moved to the device as before: the masked loss
   and the encoder's rows chosen on the device) and of the fast path (this run's settings, the
   batch as the trainer passes it). CPU tests prove the two equal in float32; in bf16 their
   difference shows the rounding that compilation changes. Activation checkpointing, which
   changes no number, is on in both when asked for, so that the plain path fits where the fast
   one does.
2. Warm-up: --warmup_steps optimizer steps, the first of which reach every padded length, so that
   compilation happens here. On CUDA the second-to-last runs under the sync debug mode, which
   counts the host syncs the step makes (expected 0).
3. Timed: --steps optimizer steps fed by a DataLoader (--num_workers workers, pinned memory),
   between two device synchronisations; the time the step spends waiting in the loader is the
   data wait.

The JSON line: samples/s, non-pad tokens/s, MFU (bench/flops.py), peak allocated and reserved
GPU memory over warm-up and timed steps, data-wait fraction, graphs compiled while timing (0 when
warm-up met every shape), the loss check, device, torch version and the settings. Without a GPU
(or with --tiny) the tiny configuration runs: a check of the path, not a speed figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

if __package__ in (None, ""):  # run as a file, bench/throughput.py: import the project from its root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flops import H100_BF16_FLOPS, llama_flops_per_token, model_flop_utilisation, vision_flops_per_image  # noqa: E402
from bench.random_model import build_random_model  # noqa: E402
from bench.workload import WORKLOADS, Workload, batch_collator, timed_samples, warmup_batches  # noqa: E402
from engine.data_source import BATCH_TENSORS, batch_to_device, epoch_loader  # noqa: E402
from engine.model_setup import SpeedSettings, prepare_for_training  # noqa: E402
from engine.optimizer import build_optimizer  # noqa: E402
from engine.parallel import wrap_for_training  # noqa: E402
from engine.precision import DTYPES, PRECISIONS, autocast, check_precision, default_precision, grad_scaler  # noqa: E402
from engine.train_loop import LoopSettings, Position, Trainer  # noqa: E402
from model import default_device  # noqa: E402
from model.adapter import ImageBindLLM  # noqa: E402
from model.layout import PHASES  # noqa: E402
from model.tokenizer import PAD_ID  # noqa: E402
from util.distributed import DistributedContext  # noqa: E402

logger = logging.getLogger("bench.throughput")

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
GIB = 2**30
LEARNING_RATE = 1e-4  # any: the values do not change the speed
WEIGHT_DECAY = 0.05


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--phase", required=True, choices=PHASES)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps")
    parser.add_argument("--warmup_steps", type=int, default=8,
                        help="untimed steps first (compilation happens there); at least the number of padded lengths + 2")
    parser.add_argument("--compile", action="store_true", help="as the training flag")
    parser.add_argument("--compile_mode", choices=COMPILE_MODES, default="default",
                        help="torch.compile's mode; reduce-overhead (CUDA graphs per block) is an experiment, "
                             "checked only by this benchmark's loss check")
    parser.add_argument("--activation_checkpointing", action="store_true", help="as the training flag")
    parser.add_argument("--pad_to_multiple", type=int, default=None,
                        help="default: 32 (pre-training) or 128 (fine-tuning) with --compile, else 1")
    parser.add_argument("--group_by_length", action="store_true", help="as the training flag")
    parser.add_argument("--num_workers", type=int, default=4, help="DataLoader workers of the timed steps")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="default: bf16 on GPUs that support it, fp32 on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda when a GPU is visible, else cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny configuration (also whenever there is no GPU)")
    parser.add_argument("--no_loss_check", action="store_true", help="skip the plain-versus-fast loss check")
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="profile the timed steps and write torch.profiler's table of operators, by device "
                             "time, to FILE (the profiler slows the steps: the figures of such a run are not speeds)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    for name in ("batch_size", "steps", "warmup_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} {getattr(args, name)} must be at least 1")
    if args.pad_to_multiple is not None and args.pad_to_multiple < 1:
        raise SystemExit(f"--pad_to_multiple {args.pad_to_multiple} must be at least 1")
    if args.num_workers < 0:
        raise SystemExit(f"--num_workers {args.num_workers} must not be negative")


class TimedBatches:
    """The batches of a loader, with the time spent waiting for them and what they hold.

    The loader's workers start, and the first batch is made, before timing begins.
    """

    def __init__(self, loader: Iterable[dict]):
        self._iterator = iter(loader)
        self._first = next(self._iterator)
        self.wait_seconds = 0.0
        self.samples = self.non_pad_tokens = self.images = 0

    def __iter__(self) -> Iterator[dict]:
        yield self._count(self._first)
        while True:
            started = time.perf_counter()
            try:
                batch = next(self._iterator)
            except StopIteration:
                return
            self.wait_seconds += time.perf_counter() - started
            yield self._count(batch)

    def _count(self, batch: dict) -> dict:
        self.samples += batch["tokens"].shape[0]
        self.non_pad_tokens += int((batch["tokens"] != PAD_ID).sum())  # host tensors: no device read
        self.images += int(batch["has_image"].sum())
        return batch


class SyncCounter:
    """Counts the host syncs of the warm-up's step `step` (1-based) under CUDA's sync debug mode,
    which warns at each synchronising call; `after_step` is called with each position. CUDA only."""

    def __init__(self, step: int):
        self.step = step
        self.syncs: int | None = None
        self._catcher: warnings.catch_warnings | None = None
        self._records: list = []

    def after_step(self, position: Position) -> None:
        if position.step_in_epoch == self.step - 1:
            self._catcher = warnings.catch_warnings(record=True)
            self._records = self._catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        elif position.step_in_epoch == self.step and self._catcher is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catcher.__exit__(None, None, None)
            self.syncs = sum("synchroniz" in str(record.message) for record in self._records)


def loss_and_grad_norm(module: nn.Module, inputs: Sequence[torch.Tensor], trainables: Sequence[nn.Parameter],
                       device: torch.device, precision: str) -> tuple[float, float]:
    """One forward and backward; the loss and the trainables' gradient norm. The gradients are cleared."""
    with autocast(device, precision):
        loss = module(*inputs)
    loss.backward()
    norm = torch.nn.utils.get_total_norm([param.grad for param in trainables if param.grad is not None])
    values = (loss.item(), norm.item())
    for param in trainables:
        param.grad = None
    return values


def relative_difference(plain: float, fast: float) -> float:
    return abs(fast - plain) / max(abs(plain), 1e-30)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def graphs_compiled() -> int:
    """Graphs torch.compile has made in this process so far."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def operator_profiler(device: torch.device) -> torch.profiler.profile:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities)


def write_operator_table(profiler: torch.profiler.profile, device: torch.device, path: Path) -> None:
    """The operators that took the most time, on the GPU when there is one."""
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profiler.key_averages().table(sort_by=sort_by, row_limit=60) + "\n")
    logger.info("operator profile written to %s", path)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


@dataclass(frozen=True)
class Setup:
    """What the flags resolve to on this machine."""

    device: torch.device
    tiny: bool
    precision: str
    workload: Workload
    speed: SpeedSettings


def resolve_setup(args: argparse.Namespace) -> Setup:
    check_arguments(args)
    device = torch.device(args.device) if args.device else default_device()
    tiny = args.tiny or device.type == "cpu"
    if tiny and not args.tiny:
        logger.info("no GPU: running the tiny configuration (a check of the path, not a speed figure)")
    precision = check_precision(args.precision or default_precision(device), device)
    workload = WORKLOADS[args.phase]
    pad_to_multiple = args.pad_to_multiple or (workload.bucket if args.compile else 1)
    if args.compile and args.warmup_steps < len(workload.padded_lengths(pad_to_multiple)) + 2:
        logger.warning("--warmup_steps %d does not reach every padded length before the sync count: expect "
                       "compilation in the timed steps", args.warmup_steps)
    compile_mode = None if args.compile_mode == "default" else args.compile_mode
    speed = SpeedSettings(args.compile, args.activation_checkpointing, pad_to_multiple, compile_mode)
    return Setup(device, tiny, precision, workload, speed)


def prepare_and_check(model: ImageBindLLM, trainables: Sequence[nn.Parameter], batch: dict, setup: Setup,
                      check: bool) -> tuple[nn.Module, dict | None]:
    """prepare_for_training and the training module; with `check`, the loss check around it
    (see the module docstring) on `batch`."""
    device, precision = setup.device, setup.precision
    plain = None
    if check:
        model.llama.activation_checkpointing = setup.speed.activation_checkpointing
        every_tensor_on_device = [batch[key].to(device) for key in BATCH_TENSORS]
        plain = loss_and_grad_norm(model, every_tensor_on_device, trainables, device, precision)
    prepare_for_training(model, setup.speed)
    module = wrap_for_training(model, trainables, DistributedContext(device=device))
    if plain is None:
        return module, None
    fast = loss_and_grad_norm(module, batch_to_device(batch, device), trainables, device, precision)
    loss_check = {"plain_loss": plain[0], "fast_loss": fast[0], "loss_rel_diff": relative_difference(plain[0], fast[0]),
                  "plain_grad_norm": plain[1], "fast_grad_norm": fast[1],
                  "grad_norm_rel_diff": relative_difference(plain[1], fast[1])}
    logger.info("loss check: %s", loss_check)
    return module, loss_check


def training_loop(module: nn.Module, named_trainables: list[tuple[str, nn.Parameter]], setup: Setup) -> Trainer:
    """The engine's Trainer with AdamW, two epochs (warm-up, timed), no progress line but the
    first and last of each epoch."""
    optimizer = build_optimizer(named_trainables, LEARNING_RATE, WEIGHT_DECAY, setup.device)
    loop = LoopSettings(epochs=2, accum_iter=1, lr=LEARNING_RATE, min_lr=0.0, warmup_epochs=0.0, clip_grad=None,
                        print_freq=10**9, precision=setup.precision)
    return Trainer(module, [param for _, param in named_trainables], optimizer,
                   grad_scaler(setup.device, setup.precision), loop, DistributedContext(device=setup.device),
                   check_bad_fraction=lambda *args, **kwargs: None)


def warm_up(trainer: Trainer, batches: list[dict], device: torch.device) -> SyncCounter:
    """The warm-up epoch; on CUDA its second-to-last step runs under the sync counter."""
    counter = SyncCounter(step=len(batches) - 1)
    count_syncs = device.type == "cuda" and len(batches) >= 3
    logger.info("warm-up: %d steps", len(batches))
    for position in trainer.train_epoch(batches, len(batches), Position(0, 0, 0)):
        if count_syncs:
            counter.after_step(position)
    trainer.finish_epoch()
    return counter


def timed_steps(trainer: Trainer, batches: TimedBatches, steps: int, first_global_step: int, device: torch.device,
                profile: Path | None) -> tuple[float, dict, int]:
    """The timed epoch between two device synchronisations: (seconds, epoch stats, graphs compiled)."""
    logger.info("timing: %d steps", steps)
    profiler = operator_profiler(device) if profile else contextlib.nullcontext()
    synchronize(device)
    graphs_before = graphs_compiled()
    started = time.perf_counter()
    with profiler:
        for _ in trainer.train_epoch(batches, steps, Position(1, 0, first_global_step)):
            pass
        stats = trainer.finish_epoch()
        synchronize(device)
    seconds = time.perf_counter() - started
    if profile:
        write_operator_table(profiler, device, profile)
    return seconds, stats, graphs_compiled() - graphs_before


def peak_memory(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB}


def run_benchmark(args: argparse.Namespace) -> dict:
    """Build, check, warm up and time as the module docstring says; the result as a dict."""
    setup = resolve_setup(args)
    device, speed = setup.device, setup.speed
    torch.manual_seed(args.seed)
    model = build_random_model(args.phase, setup.tiny, device, DTYPES[setup.precision], args.seed).train()
    flops_per_token = llama_flops_per_token(model.llama.args)
    flops_per_image = vision_flops_per_image(model.image_bind)
    vocab_size = model.llama.args.vocab_size
    named_trainables = list(model.trainable_parameters().items())
    warmup = warmup_batches(setup.workload, args.batch_size, args.warmup_steps, vocab_size, args.seed,
                            speed.pad_to_multiple)
    module, loss_check = prepare_and_check(model, [param for _, param in named_trainables], warmup[0], setup,
                                           check=not args.no_loss_check)
    trainer = training_loop(module, named_trainables, setup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync_counter = warm_up(trainer, warmup, device)

    samples, sampler = timed_samples(setup.workload, args.batch_size, args.steps, vocab_size, args.seed + 1,
                                     args.group_by_length)
    loader = epoch_loader(samples, sampler, batch_collator(speed.pad_to_multiple), 0, args.num_workers,
                          pin_memory=device.type == "cuda", seed=args.seed)
    timed = TimedBatches(loader)
    seconds, stats, graphs = timed_steps(trainer, timed, args.steps, args.warmup_steps, device,
                                         Path(args.profile) if args.profile else None)

    useful_flops = timed.non_pad_tokens * flops_per_token + timed.images * flops_per_image
    return {
        "phase": args.phase,
        "batch_size": args.batch_size,
        "samples_per_s": timed.samples / seconds,
        "tokens_per_s": timed.non_pad_tokens / seconds,
        "mfu": model_flop_utilisation(useful_flops, seconds),
        **peak_memory(device),
        "data_wait_fraction": timed.wait_seconds / seconds,
        "step_seconds": seconds / args.steps,
        "timed_loss": stats["loss"],
        "samples": timed.samples,
        "non_pad_tokens": timed.non_pad_tokens,
        "images_encoded": timed.images,
        "gflop_per_token": flops_per_token / 1e9,
        "tflop_per_image": flops_per_image / 1e12,
        "mfu_reference_tflops": H100_BF16_FLOPS / 1e12,
        "graphs_compiled_while_timing": graphs,
        "host_syncs_in_one_step": sync_counter.syncs,
        "loss_check": loss_check,
        "device": device_name(device),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "tiny": setup.tiny, "precision": setup.precision, "steps": args.steps, "warmup_steps": args.warmup_steps,
            "compile": args.compile, "compile_mode": args.compile_mode,
            "activation_checkpointing": args.activation_checkpointing, "pad_to_multiple": speed.pad_to_multiple,
            "group_by_length": args.group_by_length, "num_workers": args.num_workers, "seed": args.seed,
            "fused_adamw": bool(trainer.optimizer.defaults.get("fused")), "profiled": args.profile is not None,
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    result = run_benchmark(args)
    sys.stdout.write(json.dumps(result) + "\n")  # the one line on stdout; everything else is logged
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
