"""Base + published delta -> a LLaMA folder (Open-Chinese-LLaMA-7B = Meta's 7B + its delta).

The arithmetic is the published script's (LLaMA-Adapter's imagebind_LLM/tools/get_chinese_llama.py):
every tensor but Meta's `rope.freqs` is `(base.float() + delta.float()).half()`, and params.json is
the delta's. Unlike that script, which holds both files and the result in memory (about 40 GB at
7B), the inputs are memory-mapped and each merged tensor goes to disk as soon as it is computed
(model/files/tensor_files.py), so the process's own memory holds about one float32 tensor at a time
(measured at LLaMA-7B's shapes, 2026-11-25: 1.25 GiB anonymous memory at the peak, 96 s; the
kernel's page cache holds what it can spare of the files, and gives it back under pressure). The
output needs twice its size in free disk while it is written (13.5 GB, staged, then the file).
A delta whose names or shapes differ from the base's is refused before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Mapping

import torch

from model.files import PathLike
from model.files.meta_folder import (
    MergedShards, merged_llama_state_dict, prepare_llama_folder, read_meta_params, write_llama_folder,
)

logger = logging.getLogger(__name__)

MERGED_DTYPE = torch.float16  # what the published script stores


def merged_tensor(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The published arithmetic: the sum in float32, stored in float16."""
    total = base.to(torch.float32)  # a new float32 tensor: the memory-mapped base is never written
    total += delta  # 16-bit floats widen to float32 exactly, so this is base.float() + delta.float()
    return total.to(MERGED_DTYPE)


def check_delta_matches(base: MergedShards, delta: MergedShards, base_dir: PathLike, delta_dir: PathLike) -> None:
    """Refuse a delta that lacks a tensor of the base, holds one the base lacks, or differs in a shape."""
    missing = [key for key in base if key not in delta]
    extra = [key for key in delta if key not in base]
    if missing or extra:
        raise ValueError(
            f"the delta in {delta_dir} does not match the base in {base_dir}: "
            + (f"it lacks {len(missing)} of the base's tensors ({', '.join(missing[:5])})" if missing else "")
            + ("; " if missing and extra else "")
            + (f"it holds {len(extra)} tensors the base lacks ({', '.join(extra[:5])})" if extra else "")
            + ". Is it the delta for this base (Open-Chinese-LLaMA's 7B_chinese_delta goes with Meta's 7B)?"
        )
    for key in base:
        if base.shape(key) != delta.shape(key):
            raise ValueError(f"{key} has shape {tuple(delta.shape(key))} in the delta ({delta_dir}) but "
                             f"{tuple(base.shape(key))} in the base ({base_dir}): the delta is for another model size")


class MergedDelta(Mapping[str, torch.Tensor]):
    """base + delta, tensor by tensor, computed when read (in the base's key order)."""

    def __init__(self, base: MergedShards, delta: MergedShards):
        self.base, self.delta = base, delta

    def __getitem__(self, key: str) -> torch.Tensor:
        return merged_tensor(self.base[key], self.delta[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def merge_delta(base_dir: PathLike, delta_dir: PathLike, out_dir: PathLike, force: bool = False) -> Path:
    """Write out_dir = base_dir + delta_dir (Meta's layout both); see the module docstring.

    out_dir must not exist (or be empty) unless `force`; it may never be one of the inputs.
    Returns out_dir.
    """
    out_dir = prepare_llama_folder(out_dir, force, inputs=[base_dir, delta_dir])
    base, delta = merged_llama_state_dict(base_dir), merged_llama_state_dict(delta_dir)
    check_delta_matches(base, delta, base_dir, delta_dir)
    params = read_meta_params(delta_dir)
    logger.info("merging %d tensors: %s + %s -> %s", len(base), base_dir, delta_dir, out_dir)
    write_llama_folder(out_dir, MergedDelta(base, delta), params)
    logger.info("wrote %s", out_dir)
    return out_dir
