"""Checkpoint files in an output folder: atomic writes, names, the latest one, pruning.

What a checkpoint holds is the engine's business; this file only makes sure that a file named
`checkpoint-*.pth` is always complete. A run killed in the middle of a write (preemption, a full
disk, a node failure) leaves the previous file untouched and at most a hidden temporary file,
which the next run removes (remove_leftover_temporary_files).

Layout of an output folder:
    checkpoint-<epoch>.pth   one per saved epoch; the oldest are pruned with `--keep_last N`
    checkpoint-last.pth      the newest state, epoch end or mid-epoch; `--resume auto` reads it
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_NAME = "checkpoint-last.pth"
_EPOCH_CHECKPOINT = re.compile(r"checkpoint-(\d+)\.pth")


def epoch_checkpoint_path(output_dir: str | Path, epoch: int) -> Path:
    return Path(output_dir) / f"checkpoint-{epoch}.pth"


def last_checkpoint_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / LAST_CHECKPOINT_NAME


def _temporary_path(path: Path) -> Path:
    # Hidden, unique per writer, and in the destination folder: os.replace is atomic only within
    # one file system. remove_leftover_temporary_files knows this pattern.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


_LEFTOVER = re.compile(r"\.checkpoint-(\d+|last)\.pth\.\d+\.[0-9a-f]{8}\.tmp")


def remove_leftover_temporary_files(output_dir: str | Path) -> list[Path]:
    """Remove the temporary files of checkpoint writes that were killed midway (only our own
    pattern: `.checkpoint-<epoch|last>.pth.<pid>.<hex>.tmp`); returns what was removed. Call it
    while holding the output folder (util/run_lock.py), when nobody else writes there."""
    removed = []
    folder = Path(output_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            if _LEFTOVER.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a temporary file beside `path`, then rename it over `path`."""
    tmp = _temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: str | Path) -> None:
    """`torch.save(obj, path)`, but a failure at any point leaves an existing `path` as it was."""
    path = Path(path)

    def write(tmp: Path) -> None:
        # "xb": a fresh file with the usual permissions (umask), not mkstemp's owner-only 0600.
        with open(tmp, "xb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    _write_atomically(path, write)


def _atomic_copy(source: Path, path: Path) -> None:
    """Make `path` the same file as `source`: a hard link (no copy) where the file system allows."""

    def write(tmp: Path) -> None:
        try:
            os.link(source, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())

    _write_atomically(path, write)


def save_checkpoint(obj: Any, output_dir: str | Path, epoch: int | None = None) -> Path:
    """Write `checkpoint-last.pth`, and `checkpoint-<epoch>.pth` too when `epoch` is given.

    The epoch file is written first and `checkpoint-last.pth` made a hard link to it, so a
    multi-gigabyte state is serialised and written once. Returns the path written first.
    Call on one rank only.
    """
    output_dir = Path(output_dir)
    last = last_checkpoint_path(output_dir)
    if epoch is None:
        atomic_save(obj, last)
        return last
    if epoch < 0:
        raise ValueError(f"epoch {epoch} must not be negative")
    epoch_path = epoch_checkpoint_path(output_dir, epoch)
    atomic_save(obj, epoch_path)
    _atomic_copy(epoch_path, last)
    return epoch_path


def epoch_checkpoints(output_dir: str | Path) -> dict[int, Path]:
    """The `checkpoint-<epoch>.pth` files in `output_dir`, by epoch (numerically: 10 after 9)."""
    found = {}
    for path in Path(output_dir).glob("checkpoint-*.pth"):
        match = _EPOCH_CHECKPOINT.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def find_latest_checkpoint(output_dir: str | Path) -> Path | None:
    """What `--resume auto` continues from: `checkpoint-last.pth`, else the highest epoch's file.

    None when the folder holds no checkpoint (or does not exist): the run starts afresh.
    """
    last = last_checkpoint_path(output_dir)
    if last.is_file():
        return last
    by_epoch = epoch_checkpoints(output_dir)
    return by_epoch[max(by_epoch)] if by_epoch else None


def prune_checkpoints(output_dir: str | Path, keep_last: int | None, protect: str | Path | None = None) -> list[Path]:
    """Delete all but the `keep_last` highest-epoch `checkpoint-<epoch>.pth` files; return the deleted.

    `checkpoint-last.pth` is never deleted, nor `protect` (the file just written, which may not be
    among the highest epochs when an older run left later ones behind). None keeps everything.
    """
    if keep_last is None:
        return []
    if keep_last < 1:
        raise ValueError(f"--keep_last {keep_last} must be at least 1 (leave it unset to keep every checkpoint)")
    protected = Path(protect).resolve() if protect is not None else None
    by_epoch = epoch_checkpoints(output_dir)
    deleted = []
    for epoch in sorted(by_epoch)[:-keep_last]:
        path = by_epoch[epoch]
        if path.resolve() == protected:
            continue
        path.unlink(missing_ok=True)
        deleted.append(path)
    if deleted:
        logger.info("deleted %d old checkpoint(s) (--keep_last %d): %s",
                    len(deleted), keep_last, ", ".join(p.name for p in deleted))
    return deleted
