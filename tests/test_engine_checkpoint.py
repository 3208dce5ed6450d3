"""engine/checkpoint.py on a toy model: what a checkpoint holds, that a run
stopped mid-epoch and restored from it repeats the uninterrupted run's losses bit for bit, and
which changed settings refuse a resume."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from engine.flags import build_parser
from engine.checkpoint import (
    FORMAT_VERSION, Checkpointer, RunRecord, check_resumable, restore_training_state, resume_path,
)
from engine.errors import ResumeMismatchError, SetupError
from engine.train_loop import Position
from support.engine_doubles import ListSampler, ToyModel, make_trainer, run_epoch, toy_batch
from model.files.tensor_files import load_tensors
from util.checkpoint import epoch_checkpoint_path, last_checkpoint_path
from util.distributed import DistributedContext

BATCHES_PER_EPOCH = 4
EPOCHS = 2
TOY_BASE = {"llama_type": "toy", "params": {"dim": 8, "n_layers": 1, "n_heads": 2}, "fingerprint": "0123456789abcdef"}
RECORD = RunRecord(phase="pretrain", imagebind_args=None, data_config_sha256="0" * 64, world_size=1, precision="fp32",
                   base=TOY_BASE)


def toy_args(tmp_path, *extra: str) -> argparse.Namespace:
    return build_parser("pretrain").parse_args(["--llama_path", str(tmp_path), "--data_config", "d.yaml",
                                                "--output_dir", str(tmp_path / "out"), *extra])


def epoch_batches(epoch: int) -> list[dict]:
    return [toy_batch(100 * epoch + i) for i in range(BATCHES_PER_EPOCH)]


class ToyRun:
    """The run's loop (engine/run.py) over the toy model, recording every forward's loss."""

    def __init__(self, tmp_path, stop_at: int | None = None):
        self.model = ToyModel(dropout=0.3)  # draws from the global generator every step
        self.losses: list[float] = []
        forward = self.model.forward
        self.model.forward = lambda *a: self._record(forward(*a))
        self.trainer = make_trainer(self.model, epochs=EPOCHS, warmup=0.5)
        self.sampler = ListSampler([[[i] for i in range(BATCHES_PER_EPOCH)]] * EPOCHS)
        self.checkpointer = Checkpointer(tmp_path, None, DistributedContext(), self.model, self.trainer.optimizer,
                                         self.trainer.scaler, self.sampler, self.trainer.stats, toy_args(tmp_path),
                                         RECORD)
        self.stop_at = stop_at

    def _record(self, loss: torch.Tensor) -> torch.Tensor:
        self.losses.append(loss.item())
        return loss

    def _between_steps(self, position: Position) -> bool:
        if position.global_step == self.stop_at:
            self.checkpointer.save(position, position.step_in_epoch)
            return True
        return False

    def train(self, position: Position) -> list[dict]:
        epoch_stats = []
        for epoch in range(position.epoch, EPOCHS):
            self.sampler.set_epoch(epoch)
            batches = epoch_batches(epoch)
            stats = run_epoch(self.trainer, [batches[i] for (i,) in self.sampler], BATCHES_PER_EPOCH, position,
                              self._between_steps)
            if stats is None:
                return epoch_stats
            position = Position(epoch + 1, 0, position.global_step + BATCHES_PER_EPOCH - position.step_in_epoch)
            epoch_stats.append(stats)
            self.checkpointer.save(position, BATCHES_PER_EPOCH, epoch_file=epoch)
        return epoch_stats


def test_a_run_restored_mid_epoch_repeats_the_uninterrupted_losses_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    uninterrupted = ToyRun(tmp_path / "a")
    full_stats = uninterrupted.train(Position(0, 0, 0))

    torch.manual_seed(0)
    stopped = ToyRun(tmp_path / "b", stop_at=2)
    stopped.train(Position(0, 0, 0))
    checkpoint = load_tensors(last_checkpoint_path(tmp_path / "b"))

    torch.manual_seed(12345)  # whatever the new process drew before: the checkpoint puts it back
    resumed = ToyRun(tmp_path / "b")
    resumed.model.load_state_dict(checkpoint["model"], strict=False)
    position = restore_training_state(checkpoint, resumed.trainer.optimizer, resumed.trainer.scaler,
                                      resumed.sampler, resumed.trainer.stats, DistributedContext())
    assert position == Position(0, 2, 2)
    resumed_stats = resumed.train(position)

    assert stopped.losses + resumed.losses == uninterrupted.losses  # exact float equality
    assert resumed_stats == full_stats  # the epoch means too, thanks to the saved epoch sums


def test_a_checkpoint_holds_the_documented_entries_and_nothing_frozen(tmp_path):
    run = ToyRun(tmp_path, stop_at=3)
    run.train(Position(0, 0, 0))
    checkpoint = load_tensors(last_checkpoint_path(tmp_path))
    assert set(checkpoint) == {
        "format_version", "model", "optimizer", "scaler", "epoch", "step_in_epoch", "global_step", "sampler",
        "rng", "epoch_stats", "args", "phase", "imagebind_args", "data_config_sha256", "world_size", "base",
        "precision",
    }
    assert checkpoint["base"] == TOY_BASE
    assert checkpoint["format_version"] == FORMAT_VERSION
    assert set(checkpoint["model"]) == set(run.model.state_dict_released())
    assert "embed.weight" not in checkpoint["model"]  # the frozen part
    trainable_shapes = sorted(tuple(p.shape) for p in run.model.trainable_parameters().values())
    saved_shapes = sorted(tuple(state["exp_avg"].shape) for state in checkpoint["optimizer"]["state"].values())
    assert saved_shapes == trainable_shapes
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]) == (0, 3, 3)
    assert checkpoint["sampler"] == {"epoch": 0, "batches_done": 3}
    assert checkpoint["args"]["batch_size"] == 64 and checkpoint["phase"] == "pretrain"
    assert len(checkpoint["rng"]) == 1 and checkpoint["scaler"] == {}


def test_epoch_ends_write_an_epoch_file_and_point_last_at_the_next_epoch(tmp_path):
    run = ToyRun(tmp_path)
    run.train(Position(0, 0, 0))
    for epoch in range(EPOCHS):
        assert epoch_checkpoint_path(tmp_path, epoch).is_file()
    last = load_tensors(last_checkpoint_path(tmp_path))
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (EPOCHS, 0, EPOCHS * BATCHES_PER_EPOCH)
    assert last["sampler"] == {"epoch": EPOCHS, "batches_done": 0}


# -- resume: which file, and whether it may ---------------------------------------------------------

def test_resume_path_auto_none_and_explicit(tmp_path):
    assert resume_path("none", tmp_path) is None
    assert resume_path("auto", tmp_path / "missing") is None  # nothing there: a fresh start
    (tmp_path / "checkpoint-3.pth").write_bytes(b"x")
    assert resume_path("auto", tmp_path) == tmp_path / "checkpoint-3.pth"
    (tmp_path / "checkpoint-last.pth").write_bytes(b"x")
    assert resume_path("auto", tmp_path) == tmp_path / "checkpoint-last.pth"
    assert resume_path(str(tmp_path / "checkpoint-3.pth"), tmp_path) == tmp_path / "checkpoint-3.pth"
    with pytest.raises(SetupError, match="--resume .*nowhere.pth: no such checkpoint file"):
        resume_path(str(tmp_path / "nowhere.pth"), tmp_path)


def saved_checkpoint(tmp_path, *flags: str) -> dict:
    return {"format_version": FORMAT_VERSION, "args": vars(toy_args(tmp_path, *flags)), **RECORD.as_dict()}


def test_resume_refuses_a_changed_model_or_data_and_lists_every_difference(tmp_path):
    checkpoint = saved_checkpoint(tmp_path, "--llama_type", "7B", "--num_workers", "2")
    now = toy_args(tmp_path, "--llama_type", "13B", "--num_workers", "8", "--data_config", "other.yaml")
    changed_record = RunRecord(**{**RECORD.as_dict(), "data_config_sha256": "1" * 64})
    with pytest.raises(ResumeMismatchError) as refused:
        check_resumable(checkpoint, tmp_path / "checkpoint-last.pth", now, changed_record)
    message = str(refused.value)
    assert "--llama_type: '7B' -> '13B'" in message
    assert "--data_config: 'd.yaml' -> 'other.yaml'" in message
    assert "data_config_sha256: '" + "0" * 64 in message
    assert "harmless changes:\n    --num_workers: 2 -> 8" in message
    assert "--resume_force" in message


def test_resume_refuses_another_llama_base_but_not_the_same_one(tmp_path):
    other_base = RunRecord(**{**RECORD.as_dict(), "base": {**TOY_BASE, "fingerprint": "fedcba9876543210"}})
    with pytest.raises(ResumeMismatchError, match="LLaMA base: fingerprint 0123456789abcdef .checkpoint. != "
                                                  "fedcba9876543210 .loaded."):
        check_resumable(saved_checkpoint(tmp_path), tmp_path / "c.pth", toy_args(tmp_path), other_base)
    check_resumable(saved_checkpoint(tmp_path), tmp_path / "c.pth", toy_args(tmp_path), RECORD)


def test_resume_refuses_another_precision(tmp_path):
    # An unset --precision follows the machine: resuming a GPU run on the CPU would switch bf16 to fp32.
    on_another_machine = RunRecord(**{**RECORD.as_dict(), "precision": "bf16"})
    with pytest.raises(ResumeMismatchError, match="precision: 'fp32' -> 'bf16'"):
        check_resumable(saved_checkpoint(tmp_path), tmp_path / "c.pth", toy_args(tmp_path), on_another_machine)


def test_harmless_changes_are_only_logged_and_force_overrides(tmp_path, caplog):
    checkpoint = saved_checkpoint(tmp_path, "--print_freq", "5")
    with caplog.at_level(logging.INFO, logger="engine.checkpoint"):
        check_resumable(checkpoint, tmp_path / "c.pth", toy_args(tmp_path, "--print_freq", "50"), RECORD)
    assert "--print_freq: 5 -> 50" in caplog.text
    forced = toy_args(tmp_path, "--blr", "0.5", "--resume_force")
    with caplog.at_level(logging.WARNING, logger="engine.checkpoint"):
        check_resumable(checkpoint, tmp_path / "c.pth", forced, RECORD)
    assert "--blr: 0.001 -> 0.5" in caplog.text and "--resume_force: continuing" in caplog.text


def test_resume_refuses_another_phase_or_a_file_that_is_not_a_training_checkpoint(tmp_path):
    finetune = RunRecord(**{**RECORD.as_dict(), "phase": "finetune"})
    with pytest.raises(ResumeMismatchError, match="written by pretrain but this is finetune.*--pretrained_path"):
        check_resumable(saved_checkpoint(tmp_path), tmp_path / "c.pth", toy_args(tmp_path, "--resume_force"), finetune)
    with pytest.raises(ResumeMismatchError, match="not a training checkpoint"):
        check_resumable({"model": {}}, tmp_path / "7B.pth", toy_args(tmp_path), RECORD)
