"""torch.save files of tensors, one tensor at a time: read memory-mapped, written through the disk.

torch.save needs the whole object in memory, which at LLaMA-7B is 13.5 GB in float16 (27 GB in
float32 for a merge). save_tensors instead copies each tensor, as soon as it is computed, into a
storage backed by a file of its own (torch.from_file, a shared mapping): the kernel writes those
pages to disk and may drop them from memory, so the process holds about one tensor at a time.
torch.save then streams the file-backed storages into an ordinary checkpoint. Reading goes the
same way round: torch.load(mmap=True) maps the file and reads pages when a tensor is used.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from model.files import PathLike

logger = logging.getLogger(__name__)


def load_tensors(path: PathLike) -> Any:
    """torch.load on the CPU, memory-mapped when the file allows it, tensors and plain data only."""
    with torch.serialization.safe_globals([argparse.Namespace]):  # the reference's files store 'args'
        try:
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            logger.info("%s cannot be memory-mapped (legacy format); reading it whole", path)
            return torch.load(path, map_location="cpu", weights_only=True)


def _file_backed_copy(tensor: torch.Tensor, backing_file: Path) -> torch.Tensor:
    """A contiguous copy of `tensor` whose storage lives in `backing_file` rather than in memory."""
    if tensor.numel() == 0:
        return torch.empty(tensor.shape, dtype=tensor.dtype)
    backed = torch.from_file(str(backing_file), shared=True, size=tensor.numel(), dtype=tensor.dtype)
    backed = backed.view(tensor.shape)
    backed.copy_(tensor)
    return backed


def save_tensors(path: PathLike, items: Iterable[tuple[str, torch.Tensor]]) -> int:
    """torch.save({key: tensor, ...}) for the (key, tensor) pairs of `items`, holding one at a time.

    `items` may compute the tensors one by one (a merge, a conversion). Each is staged in a scratch
    folder beside `path` (as large as the result; removed at the end), then torch.save writes the
    file. Returns the number of tensors written.
    """
    path = Path(path)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged: dict[str, torch.Tensor] = {}
        for key, tensor in items:
            if key in staged:
                raise ValueError(f"{path}: tensor {key!r} given twice")
            staged[key] = _file_backed_copy(tensor.detach().to("cpu"), scratch / f"{len(staged)}.bin")
            del tensor  # before the next one is computed
        torch.save(staged, path)
        return len(staged)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
