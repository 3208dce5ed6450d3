"""A training run, for either phase, as the entry points drive it: parse, set up, train, exit status.

    with exit_on_user_error(DATA_ERRORS), TrainingRun(parse_flags("pretrain", argv), "pretrain") as run:
        run.train(build_training_data(PretrainDataset, DataSettings(**run.data_settings())))

`exit_on_user_error` turns the errors a user can fix into one line and status 1. Entering
`TrainingRun` sets up the process group, the log and the settings and checks the run's files
without reading a weight; the entry point then builds the data (so that a mistake in the data is
found before minutes of loading weights); `train` builds the model and the optimizer, resumes and
runs the epochs. With one process attached to the terminal, this order is the launchers' pre-flight.

Each file is read once: the checkpoint to resume from (or, fine-tuning, the pre-training
checkpoint) is opened once and gives the model's adapter tensors, the resume check and the
training state; the LLaMA folder is resolved and fingerprinted once and gives the model and the
run's record. The epochs:

    each epoch:   the loop (engine/train_loop.py) yields after every step; the run saves
                  checkpoint-last.pth every --save_interval_steps and stops on SIGTERM/SIGUSR1
                  (saved) -> the epoch's stats -> validation loss -> log.txt -> checkpoint

The process group and the TensorBoard writer are closed however the run ends. An error the user
can fix (engine.errors.TrainingError, a missing file, the data errors the entry point names, also
when a DataLoader worker raised one) is logged as its message alone; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from engine.checkpoint import Checkpointer, restore_training_state
from engine.data_source import DataParts, epoch_loader
from engine.errors import SetupError, TrainingError, user_message
from engine.evaluate import validation_loss
from engine.flags import build_parser, derive_settings, requested_device
from engine.model_setup import SpeedSettings, build_training_model, prepare_for_training
from engine.optimizer import build_optimizer
from engine.plan import check_imagebind_file, describe_plan, planned_context, resolve_inputs
from engine.parallel import broadcast_trainables, check_trainables_agree, wrap_for_training
from engine.precision import grad_scaler
from engine.train_loop import LoopSettings, Position, Trainer, batches_in_steps, steps_in_epoch
from util.checkpoint import remove_leftover_temporary_files
from util.distributed import any_rank, init_distributed, shutdown_distributed
from util.log import init_logger
from util.metric_writers import TensorBoardWriter, append_json_line
from util.parent_death import die_with_parent
from util.preemption import PreemptionHandler
from util.run_lock import RunLock, RunLockedError

logger = logging.getLogger(__name__)

LOG_NAME = "log.txt"
STEP_LOSSES_NAME = "step_losses.jsonl"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)
TORCHRUN_WORKER_ENV = "TORCHELASTIC_RUN_ID"  # torchrun sets it in every worker it starts
# The evaluation during training, as the entry point builds it: (model, context, epoch) -> metrics.
Evaluator = Callable[[Any, Any, int], dict]


def parse_flags(phase: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of `phase` from `argv` (default: the command line)."""
    return build_parser(phase).parse_args(argv)


@contextlib.contextmanager
def exit_on_user_error(expected_errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """End the process with one logged line and status 1 on an error the user can fix (TrainingError,
    a missing file, and `expected_errors`), with 130 on Ctrl-C; anything else keeps its traceback."""
    try:
        yield
    except (TrainingError, FileNotFoundError, *expected_errors) as error:
        logger.error("%s: %s", type(error).__name__, user_message(error))
        raise SystemExit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        logger.error("interrupted; checkpoint-last.pth (if any) holds the last saved state")
        raise SystemExit(EXIT_INTERRUPTED) from None


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainingRun:
    """One run: `with TrainingRun(args, phase) as run:` checks it; `run.train(data)` trains to the end."""

    def __init__(self, args: argparse.Namespace, phase: str):
        self.args = args
        self.phase = phase

    def __enter__(self) -> TrainingRun:
        with contextlib.ExitStack() as stack:  # what is taken here is given back however the run ends
            if os.environ.get(TORCHRUN_WORKER_ENV):
                die_with_parent()  # a worker outlives no launcher (util/parent_death.py)
            # Stop signals become a request, read at step boundaries, from the start on.
            self.preemption = stack.enter_context(PreemptionHandler())
            if self.args.dry_run:  # one process standing for the job; it writes nothing
                self.context, self.lock, self.leftovers = planned_context(self.args), None, []
                init_logger(0, level=logging.WARNING)  # the plan is printed; only problems are logged
            else:
                self.context = init_distributed(requested_device(self.args), self.args.dist_url)
                stack.callback(shutdown_distributed, self.context)
                self.lock = self._take_output_folder()
                if self.lock is not None:
                    stack.callback(self.lock.release)
                init_logger(self.context.rank, self.args.output_dir, distributed=self.context.distributed)
            if self.args.world_size not in (1, self.context.world_size):
                logger.warning("--world_size %d ignored: the launcher started %d processes", self.args.world_size,
                               self.context.world_size)
            self.settings = derive_settings(self.args, self.phase, self.context)
            self._plan()
            self._resources = stack.pop_all()
        return self

    def __exit__(self, *exc_info) -> None:
        self._resources.close()

    def _take_output_folder(self) -> RunLock | None:
        """Global rank 0 locks the output folder (one job per folder: util/run_lock.py) and removes
        what a killed checkpoint write left there; the other ranks are the same job."""
        self.leftovers: list[Path] = []
        if not self.context.is_main:
            return None
        output_dir = Path(self.args.output_dir).expanduser()
        lock = RunLock(output_dir)
        try:
            lock.acquire(force=self.args.force_lock)
        except RunLockedError as error:
            raise SetupError(str(error)) from None
        self.leftovers = remove_leftover_temporary_files(output_dir)
        return lock

    # -- set-up: what to resume from, then the model and the optimizer -----------------------------

    def _plan(self) -> None:
        """Open the run's files (headers, no weights) and decide what to resume from."""
        args, settings, context = self.args, self.settings, self.context
        logger.info("%s on %s, %d process(es), precision %s, effective batch %d, lr %.3e",
                    settings.phase, settings.device, context.world_size, settings.precision,
                    settings.effective_batch_size, settings.lr)
        for leftover in self.leftovers:
            logger.info("removed %s, left by a checkpoint write that was killed midway", leftover)
        self.inputs = resolve_inputs(args, settings, context)  # each file opened once
        if args.dry_run:
            self.imagebind_tensors = check_imagebind_file(settings.imagebind_path)

    def _build_model(self) -> None:
        args, settings, context = self.args, self.settings, self.context
        seed_everything(args.seed)  # the same on every rank: a fresh adapter starts the same everywhere
        self.model = build_training_model(self.inputs.llama, settings.imagebind_path, settings.phase,
                                          self.inputs.imagebind_args, settings.device, settings.precision,
                                          self.inputs.adapter)
        prepare_for_training(self.model, SpeedSettings(args.compile, args.activation_checkpointing,
                                                       args.pad_to_multiple))
        named_trainables = list(self.model.trainable_parameters().items())
        self.trainables = [param for _, param in named_trainables]
        broadcast_trainables(self.trainables, context)
        self.module = wrap_for_training(self.model, self.trainables, context)
        self.optimizer = build_optimizer(named_trainables, settings.lr, args.weight_decay, settings.device)
        self.scaler = grad_scaler(settings.device, settings.precision)

    def evaluation_settings(self) -> dict[str, Any] | None:
        """What this run asks of an evaluation during training (evaluation/during_training.py's
        EvaluationSettings keyword arguments), or None without --eval_config."""
        args = self.args
        if args.eval_config is None:
            return None
        return dict(config_path=Path(args.eval_config), output_dir=self.settings.output_dir,
                    batch_size=args.batch_size, limit=args.eval_limit)

    def data_settings(self) -> dict[str, Any]:
        """What this run needs of its data: the keyword arguments of data/training_data.py's
        DataSettings (the tokenizer is that of the LLaMA folder the model is built from)."""
        args = self.args
        return dict(
            config_path=Path(args.data_config), tokenizer_path=self.inputs.llama.tokenizer_path,
            val_config_path=Path(args.val_data_config) if args.val_data_config is not None else None,
            rank=self.context.rank, world_size=self.context.world_size, batch_size=args.batch_size,
            max_words=args.max_words, seed=args.seed, on_bad_sample=args.on_bad_sample,
            max_bad_fraction=args.max_bad_fraction, group_by_length=args.group_by_length,
            split_epoch=self.settings.split_epoch, pad_to_multiple=args.pad_to_multiple,
            preview_only=args.dry_run,
        )

    # -- training ----------------------------------------------------------------------------------

    def train(self, data: DataParts, evaluator: Evaluator | None = None) -> None:
        """Train every epoch left; returns when done or stopped by a signal (checkpoint saved).
        A dry run prints its plan instead (`data` is then data/'s preview). `evaluator(model,
        context, epoch)`, when given, runs every --eval_freq epochs; its metrics are logged."""
        self.evaluator = evaluator
        args, settings, context = self.args, self.settings, self.context
        if args.dry_run:
            for line in describe_plan(args, settings, self.inputs, self.imagebind_tensors, data):
                print(line)
            return
        self.data = data
        self._build_model()
        with TensorBoardWriter(settings.log_dir, enabled=context.is_main) as self.writer:
            self.trainer = Trainer(self.module, self.trainables, self.optimizer, self.scaler, self._loop_settings(),
                                   context, data.check_bad_fraction, self.writer)
            self.checkpointer = Checkpointer(settings.output_dir, args.keep_last, context, self.model, self.optimizer,
                                             self.scaler, data.train_sampler, self.trainer.stats, args,
                                             self.inputs.record)
            seed_everything(args.seed + context.rank)
            position = Position(args.start_epoch, 0, 0)
            if self.inputs.resume_state is not None:
                position = restore_training_state(self.inputs.resume_state, self.optimizer, self.scaler,
                                                  data.train_sampler, self.trainer.stats, context)
                # The optimizer holds its own copy of the state; the file's memory map would keep
                # its disk space taken after the next save replaces it.
                self.inputs.adapter = None
            if any_rank(self.preemption.requested, context):
                self._log_stop(position, before_training=True)
                return
            self._epochs(position)

    def _loop_settings(self) -> LoopSettings:
        args = self.args
        step_losses = self.settings.output_dir / STEP_LOSSES_NAME if args.log_step_losses else None
        return LoopSettings(epochs=args.epochs, accum_iter=args.accum_iter, lr=self.settings.lr, min_lr=args.min_lr,
                            warmup_epochs=args.warmup_epochs, clip_grad=args.clip_grad, print_freq=args.print_freq,
                            precision=self.settings.precision, step_loss_path=step_losses)

    def _epochs(self, position: Position) -> None:
        args, data = self.args, self.data
        for epoch in range(position.epoch, args.epochs):
            started = time.perf_counter()
            loader = epoch_loader(data.train_dataset, data.train_sampler, data.collate_fn, epoch,
                                  args.num_workers, self._pin_memory(), args.seed)
            batches = len(data.train_sampler)
            self._check_start(position, batches)
            start = position
            for position in self.trainer.train_epoch(loader, batches, start):
                if self._save_or_stop_between_steps(position):
                    return
            stats = self.trainer.finish_epoch()
            steps = steps_in_epoch(batches, args.accum_iter)
            position = Position(epoch + 1, 0, start.global_step + steps - start.step_in_epoch)
            self._end_epoch(epoch, stats, position, time.perf_counter() - started)
            if any_rank(self.preemption.requested, self.context):
                self._log_stop(position)
                return
        logger.info("training done: %d epochs, %d optimizer steps", args.epochs, position.global_step)

    def _check_start(self, position: Position, batches: int) -> None:
        expected = batches_in_steps(position.step_in_epoch, batches, self.args.accum_iter)
        if self.data.train_sampler.start_batch != expected:
            raise TrainingError(
                f"the batch sampler resumes epoch {position.epoch + 1} after {self.data.train_sampler.start_batch} "
                f"batches but the checkpoint's position (step {position.step_in_epoch} x --accum_iter "
                f"{self.args.accum_iter}) needs {expected}"
            )

    def _pin_memory(self) -> bool:
        return self.args.pin_mem and self.settings.device.type == "cuda"

    def _save_or_stop_between_steps(self, position: Position) -> bool:
        """After a step inside an epoch: the periodic checkpoint, and the stop on a signal (True: stop)."""
        if self.lock is not None:
            self.lock.refresh()
        interval = self.args.save_interval_steps
        saved = False
        if interval and position.global_step % interval == 0:
            self._save(position)
            saved = True
        if not any_rank(self.preemption.requested, self.context):
            return False
        if not saved:
            self._save(position)
        self._log_stop(position)
        return True

    def _save(self, position: Position, epoch_file: int | None = None) -> None:
        self.trainer.verify_finite(position)  # never save state computed from a non-finite loss
        batches = len(self.data.train_sampler)
        # Step 0 is an epoch's end: the sampler still stands in the finished epoch, all its batches done.
        batches_done = (batches if position.step_in_epoch == 0
                        else batches_in_steps(position.step_in_epoch, batches, self.args.accum_iter))
        self.checkpointer.save(position, batches_done, epoch_file)

    def _log_stop(self, position: Position, before_training: bool = False) -> None:
        signal_name = self.preemption.signal_name or "a stop signal (on another rank)"
        if before_training:
            logger.info("stopped by %s before training began: nothing to save; launching again starts (or "
                        "resumes) the run", signal_name)
            return
        logger.info("stopped by %s at %s; checkpoint-last.pth in %s holds this point: launching again on this "
                    "folder resumes there (--resume auto, which the launchers pass)", signal_name,
                    position.describe(), self.settings.output_dir)

    def _end_epoch(self, epoch: int, stats: dict, position: Position, seconds: float) -> None:
        args = self.args
        number = epoch + 1  # epochs count from 1 wherever a person reads them; checkpoint-N.pth follows
        record = {"epoch": number, "global_step": position.global_step,
                  **{f"train_{key}": value for key, value in stats.items() if key != "bad_samples"},
                  "bad_samples": stats["bad_samples"], "epoch_seconds": round(seconds, 3)}
        if self.data.dropped_at_load:
            record["bad_rows_dropped_at_load"] = self.data.dropped_at_load
        if self.data.val_dataset is not None:
            record["val_loss"] = self._validation_loss()
        if self.evaluator is not None and number % args.eval_freq == 0:
            record.update(self.evaluator(self.model, self.context, number))
        if self.context.is_main:
            append_json_line(self.settings.output_dir / LOG_NAME, record)
            self.writer.add_scalars({key: value for key, value in record.items()
                                     if key.startswith(("train_", "val_", "eval_"))},
                                    position.global_step, prefix="epoch/")
            self.writer.flush()
        logger.info("epoch %d of %d: %s", number, args.epochs, record)
        check_trainables_agree(self.trainables, self.context)
        epoch_file = number if number % args.save_freq == 0 or number == args.epochs else None
        self._save(position, epoch_file)
        if self.lock is not None:
            self.lock.refresh()

    def _validation_loss(self) -> float:
        data = self.data
        loader = epoch_loader(data.val_dataset, data.val_sampler, data.collate_fn, 0, self.args.num_workers,
                              self._pin_memory(), self.args.seed)
        return validation_loss(self.model, loader, self.settings.precision, self.context)
