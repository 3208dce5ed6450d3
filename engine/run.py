"""A whole training run, for either phase: set up, resume, train epoch after epoch, save, close.

    flags -> settings -> (resume: read and check the checkpoint) -> model -> DDP -> optimizer
          -> data (from the entry point's builder) -> restore the position -> epochs
    each epoch: train (engine/train_loop.py) -> validation loss -> log.txt -> checkpoint
    between steps: checkpoint-last.pth every --save_interval_steps; on SIGTERM/SIGUSR1 save and stop

The process group and the TensorBoard writer are closed however the run ends.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from engine.checkpointing import Checkpointer, RunRecord, file_sha256, restore_rng, restore_training_state
from engine.data_source import DataBuilder, DataParts, DataRequest, epoch_loader
from engine.errors import SetupError, TrainingError
from engine.evaluate import validation_loss
from engine.model_setup import SpeedSettings, build_model, prepare_for_training, resolve_model_source
from engine.optimizer import build_optimizer
from engine.parallel import broadcast_trainables, check_trainables_agree, wrap_for_training
from engine.precision import grad_scaler
from engine.resume import check_resumable, resume_path
from engine.settings import RunSettings, derive_settings, existing_file, requested_device
from engine.train_loop import LoopSettings, Position, Trainer, batches_in_steps, steps_in_epoch
from model.adapter import ImageBindLLM
from model.base_record import describe_base
from util.checkpoint import read_checkpoint
from util.distributed import DistributedContext, any_rank, init_distributed, shutdown_distributed
from util.log import init_logger
from util.metric_writers import TensorBoardWriter, append_json_line
from util.preemption import PreemptionHandler

logger = logging.getLogger(__name__)

LOG_NAME = "log.txt"
STEP_LOSSES_NAME = "step_losses.jsonl"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_training(args: argparse.Namespace, phase: str, build_data: DataBuilder) -> None:
    """Train as the flags say; returns normally when done or stopped by a signal (checkpoint saved)."""
    context = init_distributed(requested_device(args), args.dist_url)
    try:
        init_logger(context.rank, args.output_dir, distributed=context.distributed)
        if args.world_size not in (1, context.world_size):
            logger.warning("--world_size %d ignored: the launcher started %d processes", args.world_size,
                           context.world_size)
        settings = derive_settings(args, phase, context)
        _Run(args, settings, context, build_data).train()
    finally:
        shutdown_distributed(context)


class _Run:
    """The state of one run between set-up and the end of its last epoch."""

    def __init__(self, args: argparse.Namespace, settings: RunSettings, context: DistributedContext,
                 build_data: DataBuilder):
        self.args = args
        self.settings = settings
        self.context = context
        self.build_data = build_data

    def train(self) -> None:
        args, settings, context = self.args, self.settings, self.context
        logger.info("%s on %s, %d process(es), precision %s, effective batch %d, lr %.3e",
                    settings.phase, settings.device, context.world_size, settings.precision,
                    settings.effective_batch_size, settings.lr)
        checkpoint_path = resume_path(args.resume, settings.output_dir)
        checkpoint = read_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        self.model, record = self._build_model(checkpoint_path, checkpoint)
        prepare_for_training(self.model, SpeedSettings(args.compile, args.activation_checkpointing, args.pad_to_multiple))
        named_trainables = list(self.model.trainable_parameters().items())
        self.trainables = [param for _, param in named_trainables]
        broadcast_trainables(self.trainables, context)
        module = wrap_for_training(self.model, self.trainables, context)
        optimizer = build_optimizer(named_trainables, settings.lr, args.weight_decay, settings.device)
        scaler = grad_scaler(settings.device, settings.precision)
        self.data = self._build_data()

        with TensorBoardWriter(settings.log_dir, enabled=context.is_main) as self.writer:
            self.trainer = Trainer(module, self.trainables, optimizer, scaler, self._loop_settings(), context,
                                   self.data.check_bad_fraction, self.writer)
            self.checkpointer = Checkpointer(settings.output_dir, args.keep_last, context, self.model, optimizer,
                                             scaler, self.data.train_sampler, self.trainer.stats, args, record)
            seed_everything(args.seed + context.rank)
            position = Position(args.start_epoch, 0, 0)
            if checkpoint is not None:
                position = restore_training_state(checkpoint, optimizer, scaler, self.data.train_sampler,
                                                  self.trainer.stats, context)
                restore_rng(checkpoint, context)
                # The optimizer holds its own copy of the state on a GPU; the file's memory map would
                # keep its disk space taken after the next save replaces it.
                del checkpoint
            self._epochs(position)

    def _build_model(self, checkpoint_path: Path | None, checkpoint: dict | None) -> tuple[ImageBindLLM, RunRecord]:
        """The model, its adapter tensors loaded, and the run's record; a resume that belongs to another
        run is refused before anything large is loaded.

        The adapter tensors come from the run's own checkpoint when resuming, else (fine-tuning) from
        the pre-training checkpoint; pre-training from scratch has none. model/weights.py maps that
        file a second time (only its small index is read again) and copies its tensors into the
        model. The map goes with `source` on return: kept, it would hold the disk space of a
        checkpoint-last.pth that a later save replaces for the rest of the run.
        """
        args, settings = self.args, self.settings
        source = resolve_model_source(settings, args.llama_type, checkpoint_path or self._pretrained_path())
        record = RunRecord(settings.phase, source.params, source.llama_type, source.imagebind_args,
                           file_sha256(args.data_config), self.context.world_size,
                           base=describe_base(settings.llama_dir, source.llama_type), precision=settings.precision)
        if checkpoint is not None:
            check_resumable(checkpoint, checkpoint_path, args, record)
            logger.info("resuming from %s", checkpoint_path)
        seed_everything(args.seed)  # the same on every rank: a fresh adapter starts the same everywhere
        return build_model(settings, source), record

    def _build_data(self) -> DataParts:
        # The tokenizer the model was built with (model/ decides where a LLaMA folder keeps it).
        request = DataRequest(self.model.tokenizer.model_path, self.context.rank, self.context.world_size)
        try:
            return self.build_data(self.args, request)
        except ValueError as error:  # data/ checks its settings with ValueError: the message says what to change
            raise SetupError(f"the training data cannot be set up: {error}") from error

    def _pretrained_path(self) -> Path | None:
        if self.settings.phase != "finetune":
            return None
        return existing_file(self.args.pretrained_path, "--pretrained_path",
                             "a pre-training checkpoint: 7B-pretrained.pth or a checkpoint-*.pth of a pre-training run")

    def _loop_settings(self) -> LoopSettings:
        args = self.args
        step_losses = self.settings.output_dir / STEP_LOSSES_NAME if args.log_step_losses else None
        return LoopSettings(epochs=args.epochs, accum_iter=args.accum_iter, lr=self.settings.lr, min_lr=args.min_lr,
                            warmup_epochs=args.warmup_epochs, clip_grad=args.clip_grad, print_freq=args.print_freq,
                            precision=self.settings.precision, step_loss_path=step_losses)

    # -- the epochs --------------------------------------------------------------------------------

    def _epochs(self, position: Position) -> None:
        args, data = self.args, self.data
        with PreemptionHandler() as preemption:
            self.preemption = preemption
            for epoch in range(position.epoch, args.epochs):
                started = time.perf_counter()
                loader = epoch_loader(data.train_dataset, data.train_sampler, data.collate_fn, epoch,
                                      args.num_workers, self._pin_memory(), args.seed)
                batches = len(data.train_sampler)
                self._check_start(position, batches)
                stats = self.trainer.train_one_epoch(loader, batches, position, self._between_steps)
                if stats is None:
                    return
                steps = steps_in_epoch(batches, args.accum_iter)
                position = Position(epoch + 1, 0, position.global_step + steps - position.step_in_epoch)
                self._end_epoch(epoch, stats, position, batches, time.perf_counter() - started)
                if any_rank(preemption.requested, self.context):
                    self._log_stop(position)
                    return
        logger.info("training done: %d epochs, %d optimizer steps", args.epochs, position.global_step)

    def _check_start(self, position: Position, batches: int) -> None:
        expected = batches_in_steps(position.step_in_epoch, batches, self.args.accum_iter)
        if self.data.train_sampler.start_batch != expected:
            raise TrainingError(
                f"the batch sampler resumes epoch {position.epoch} after {self.data.train_sampler.start_batch} "
                f"batches but the checkpoint's position (step {position.step_in_epoch} x --accum_iter "
                f"{self.args.accum_iter}) needs {expected}"
            )

    def _pin_memory(self) -> bool:
        return self.args.pin_mem and self.settings.device.type == "cuda"

    def _between_steps(self, position: Position) -> bool:
        """After a step inside an epoch: the periodic checkpoint, and the stop on a signal."""
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

    def _log_stop(self, position: Position) -> None:
        signal_name = self.preemption.signal_name or "a stop signal (on another rank)"
        logger.info("stopped by %s at epoch %d after step %d; checkpoint-last.pth in %s holds this point: run the "
                    "same command with --resume auto (the launchers pass it) to continue", signal_name,
                    position.epoch, position.step_in_epoch, self.settings.output_dir)

    def _end_epoch(self, epoch: int, stats: dict, position: Position, batches: int, seconds: float) -> None:
        args = self.args
        record = {"epoch": epoch, "global_step": position.global_step,
                  **{f"train_{key}": value for key, value in stats.items() if key != "bad_samples"},
                  "bad_samples": stats["bad_samples"], "epoch_seconds": round(seconds, 3)}
        if self.data.dropped_at_load:
            record["bad_rows_dropped_at_load"] = self.data.dropped_at_load
        if self.data.val_dataset is not None:
            record["val_loss"] = self._validation_loss()
        if self.context.is_main:
            append_json_line(self.settings.output_dir / LOG_NAME, record)
            self.writer.add_scalars({key: value for key, value in record.items() if key.startswith(("train_", "val_"))},
                                    epoch, prefix="epoch/")
            self.writer.flush()
        logger.info("epoch %d: %s", epoch, record)
        check_trainables_agree(self.trainables, self.context)
        last_epoch = epoch + 1 == args.epochs
        epoch_file = epoch if epoch % args.save_freq == 0 or last_epoch else None
        self._save(position, epoch_file)

    def _validation_loss(self) -> float:
        data: DataParts = self.data
        loader = epoch_loader(data.val_dataset, data.val_sampler, data.collate_fn, 0, self.args.num_workers,
                              self._pin_memory(), self.args.seed)
        return validation_loss(self.model, loader, self.settings.precision, self.context)
