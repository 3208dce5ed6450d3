"""util.checkpoint: atomic writes survive a failing writer; naming, latest, pruning, reading."""

from __future__ import annotations

import os

import pytest
import torch

from util.checkpoint import (
    LAST_CHECKPOINT_NAME,
    atomic_save,
    epoch_checkpoint_path,
    epoch_checkpoints,
    find_latest_checkpoint,
    last_checkpoint_path,
    prune_checkpoints,
    remove_leftover_temporary_files,
    save_checkpoint,
)


class FailsToPickle:
    """Serialising this raises, after torch.save has already written the tensors before it."""

    def __reduce__(self):
        raise RuntimeError("simulated crash in the middle of a write")


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((64, 64), value)}, "epoch": int(value)}


def _touch_epochs(folder, epochs):
    for epoch in epochs:
        epoch_checkpoint_path(folder, epoch).write_bytes(b"x")


def test_atomic_save_round_trips(tmp_path):
    path = tmp_path / "checkpoint-last.pth"
    atomic_save(_state(1.0), path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.full((64, 64), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-last.pth"]


def test_a_failing_writer_leaves_the_old_file_intact_and_no_temporary(tmp_path):
    path = tmp_path / LAST_CHECKPOINT_NAME
    atomic_save(_state(1.0), path)
    before = path.read_bytes()
    broken = {"model": {"w": torch.full((256, 256), 2.0)}, "then": FailsToPickle()}
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_save(broken, path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [LAST_CHECKPOINT_NAME]


def test_a_failure_after_the_bytes_are_written_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / LAST_CHECKPOINT_NAME
    atomic_save(_state(1.0), path)
    before = path.read_bytes()
    temporaries = []

    def failing_fsync(fd):
        temporaries.append(os.fstat(fd).st_size)
        raise OSError("simulated disk failure")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated disk failure"):
        atomic_save(_state(2.0), path)
    assert temporaries and temporaries[0] > 64 * 64 * 4  # the new tensor was written, then it failed
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [LAST_CHECKPOINT_NAME]


def test_save_checkpoint_writes_the_epoch_file_and_last(tmp_path):
    written = save_checkpoint(_state(3.0), tmp_path, epoch=3)
    assert written == tmp_path / "checkpoint-3.pth"
    assert torch.load(tmp_path / "checkpoint-3.pth", weights_only=True)["epoch"] == 3
    assert torch.load(tmp_path / "checkpoint-last.pth", weights_only=True)["epoch"] == 3
    # A mid-epoch save replaces only last; the epoch file keeps its content.
    assert save_checkpoint(_state(4.0), tmp_path) == tmp_path / "checkpoint-last.pth"
    assert torch.load(tmp_path / "checkpoint-last.pth", weights_only=True)["epoch"] == 4
    assert torch.load(tmp_path / "checkpoint-3.pth", weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3.pth", "checkpoint-last.pth"]


def test_last_survives_pruning_of_the_epoch_file_it_was_made_from(tmp_path):
    save_checkpoint(_state(0.0), tmp_path, epoch=0)
    save_checkpoint(_state(1.0), tmp_path, epoch=1)
    # last came from epoch 1; prune epoch 1 by keeping only a later one
    save_checkpoint(_state(2.0), tmp_path, epoch=2)
    prune_checkpoints(tmp_path, keep_last=1)
    assert sorted(epoch_checkpoints(tmp_path)) == [2]
    assert torch.load(last_checkpoint_path(tmp_path), weights_only=True)["epoch"] == 2


def test_find_latest_prefers_last_then_the_highest_epoch_numerically(tmp_path):
    assert find_latest_checkpoint(tmp_path) is None
    assert find_latest_checkpoint(tmp_path / "not-made-yet") is None
    _touch_epochs(tmp_path, [2, 9, 10])
    (tmp_path / "checkpoint-best.pth").write_bytes(b"x")
    (tmp_path / ".checkpoint-11.pth.123.abcd.tmp").write_bytes(b"x")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-10.pth"
    last_checkpoint_path(tmp_path).write_bytes(b"x")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "checkpoint-last.pth"


def test_prune_keeps_the_newest_n_and_last(tmp_path):
    _touch_epochs(tmp_path, range(6))
    last_checkpoint_path(tmp_path).write_bytes(b"x")
    deleted = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in deleted) == [f"checkpoint-{e}.pth" for e in range(4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4.pth", "checkpoint-5.pth", "checkpoint-last.pth"]


def test_prune_never_deletes_the_file_just_written(tmp_path):
    # A resumed run writes epoch 1 into a folder where an earlier run left epochs 2 to 5.
    _touch_epochs(tmp_path, range(6))
    prune_checkpoints(tmp_path, keep_last=2, protect=tmp_path / "checkpoint-1.pth")
    assert sorted(epoch_checkpoints(tmp_path)) == [1, 4, 5]


def test_prune_with_none_keeps_everything_and_refuses_zero(tmp_path):
    _touch_epochs(tmp_path, range(3))
    assert prune_checkpoints(tmp_path, keep_last=None) == []
    assert sorted(epoch_checkpoints(tmp_path)) == [0, 1, 2]
    with pytest.raises(ValueError, match="--keep_last 0"):
        prune_checkpoints(tmp_path, keep_last=0)


def test_saved_files_get_the_usual_permissions(tmp_path):
    save_checkpoint(_state(1.0), tmp_path, epoch=1)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "checkpoint-1.pth").st_mode & 0o777 == 0o666 & ~umask


def test_leftovers_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    leftovers = [tmp_path / ".checkpoint-last.pth.4242.0123abcd.tmp", tmp_path / ".checkpoint-3.pth.7.ffffffff.tmp"]
    kept = [tmp_path / "checkpoint-last.pth", tmp_path / ".checkpoint-last.pth.tmp", tmp_path / "notes.tmp",
            tmp_path / ".checkpoint-best.pth.1.0123abcd.tmp"]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    assert remove_leftover_temporary_files(tmp_path) == sorted(leftovers)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_leftover_temporary_files(tmp_path / "absent") == []
