"""Meta's LLaMA folder: `params.json` beside model-parallel shards `consolidated.NN.pth`.

Larger models come as several shards, each holding a slice of every weight along one dimension
(fairscale's layer types decide which); MergedShards joins them when a tensor is read, so only
one merged tensor exists at a time. Meta's files may hold `rope.freqs`, a precomputed rotary table
that we recompute: it is left out when reading.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from model.files import PathLike
from model.files.tensor_files import load_tensors, save_tensors

logger = logging.getLogger(__name__)

PARAMS_NAME = "params.json"
LLAMA_SHARD_GLOB = "consolidated.*.pth"
SINGLE_SHARD_NAME = "consolidated.00.pth"
IGNORED_LLAMA_KEYS = ("rope.freqs",)  # Meta's precomputed rotary table: recomputed, never read

# How Meta's model-parallel layers split a weight across shards (fairscale's layer types):
# ColumnParallelLinear along its output rows, RowParallelLinear along its input columns,
# ParallelEmbedding along the embedding width. Norms are replicated.
_SHARD_DIM_BY_MODULE = {
    "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
    "wo": 1, "w2": 1, "tok_embeddings": 1,
    "attention_norm": None, "ffn_norm": None, "norm": None,
}


def is_meta_folder(model_dir: PathLike) -> bool:
    return (Path(model_dir) / PARAMS_NAME).is_file()


def read_meta_params(model_dir: PathLike) -> dict[str, Any]:
    """The contents of `model_dir/params.json`."""
    path = Path(model_dir) / PARAMS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a LLaMA folder holds Meta's params.json beside consolidated.NN.pth")
    with open(path) as f:
        return json.load(f)


def llama_shard_paths(model_dir: PathLike) -> list[Path]:
    """consolidated.00.pth, consolidated.01.pth, ... in shard order."""
    paths = sorted(Path(model_dir).glob(LLAMA_SHARD_GLOB))
    if not paths:
        raise FileNotFoundError(f"no {LLAMA_SHARD_GLOB} in {model_dir}: that is where Meta's LLaMA weights go")
    return paths


def shard_dim(key: str) -> int | None:
    """The dimension along which Meta's shards split `key` (None: replicated)."""
    module = key.rsplit(".", 2)[-2]
    if module not in _SHARD_DIM_BY_MODULE:
        raise KeyError(f"{key}: not a LLaMA weight whose model-parallel split is known")
    return _SHARD_DIM_BY_MODULE[module]


class MergedShards(Mapping[str, torch.Tensor]):
    """A read-only state dict over model-parallel shards; each tensor is merged when it is read,
    so only one merged tensor exists at a time."""

    def __init__(self, shards: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str]):
        keys = [set(shard) - set(IGNORED_LLAMA_KEYS) for shard in shards]
        for name, shard_keys in zip(names[1:], keys[1:]):
            if shard_keys != keys[0]:
                raise ValueError(f"{name} holds other keys than {names[0]}: "
                                 f"{sorted(shard_keys ^ keys[0])[:5]}; the shards do not belong together")
        self.shards = shards
        self.keys_in_order = [k for k in shards[0] if k not in IGNORED_LLAMA_KEYS]

    def _split_dim(self, key: str) -> int | None:
        if key not in self.keys_in_order:
            raise KeyError(key)
        return shard_dim(key) if len(self.shards) > 1 else None

    def __getitem__(self, key: str) -> torch.Tensor:
        dim = self._split_dim(key)
        if dim is None:
            return self.shards[0][key]
        return torch.cat([shard[key] for shard in self.shards], dim=dim)

    def shape(self, key: str) -> torch.Size:
        """self[key].shape, without reading the tensor (the shards are memory-mapped)."""
        dim = self._split_dim(key)
        shape = list(self.shards[0][key].shape)
        if dim is not None:
            shape[dim] = sum(shard[key].shape[dim] for shard in self.shards)
        return torch.Size(shape)

    def rows(self, key: str, index: Sequence[int]) -> torch.Tensor:
        """self[key][index] (rows along dim 0), reading only those rows of the memory-mapped shards."""
        dim = self._split_dim(key)
        if dim is None:
            return self.shards[0][key][list(index)]
        if dim == 1:
            return torch.cat([shard[key][list(index)] for shard in self.shards], dim=1)
        by_row, start = {}, 0
        for shard in self.shards:  # rows split across shards: each row from the shard that holds it
            size = shard[key].shape[0]
            by_row |= {row: shard[key][row - start] for row in index if start <= row < start + size}
            start += size
        return torch.stack([by_row[row] for row in index])

    def __contains__(self, key: object) -> bool:
        return key in self.keys_in_order  # Mapping's own __contains__ would read (and merge) the tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_in_order)

    def __len__(self) -> int:
        return len(self.keys_in_order)


def merged_llama_state_dict(model_dir: PathLike) -> MergedShards:
    """Meta's state dict of a LLaMA folder, shards merged on reading, 'rope.freqs' left out."""
    paths = llama_shard_paths(model_dir)
    logger.info("reading LLaMA weights from %s (%d shard%s)", model_dir, len(paths), "s" * (len(paths) > 1))
    return MergedShards([load_tensors(p) for p in paths], [str(p) for p in paths])


def prepare_llama_folder(model_dir: PathLike, force: bool, inputs: Sequence[PathLike] = ()) -> Path:
    """Make model_dir ready to receive a model: refuse a non-empty folder unless `force` (then its
    consolidated.NN.pth and params.json go, so that no stale shard is merged in), and refuse
    writing into one of `inputs` in any case. Returns model_dir."""
    model_dir = Path(model_dir)
    for source in inputs:
        if Path(source).resolve() == model_dir.resolve():
            raise ValueError(f"{model_dir} is also an input: write the result to another folder")
    if model_dir.exists() and any(model_dir.iterdir()):
        if not force:
            raise FileExistsError(f"{model_dir} already exists and is not empty: choose another folder, or pass "
                                  "--force to replace the model in it")
        for stale in [*model_dir.glob(LLAMA_SHARD_GLOB), model_dir / PARAMS_NAME]:
            logger.info("--force: removing %s", stale)
            stale.unlink(missing_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)
    return model_dir


def write_llama_folder(model_dir: PathLike, state_dict: Mapping[str, torch.Tensor], params: Mapping[str, Any],
                       dtype: torch.dtype | None = None) -> Path:
    """Write Meta's layout: model_dir/params.json and one shard, consolidated.00.pth. Returns model_dir.

    The tensors are read from `state_dict` (cast to `dtype` when given) and written one at a time,
    so a lazy mapping (MergedShards, a Hugging Face folder) is never held whole. The shard is written
    under a temporary name and renamed when complete, and params.json comes last: a folder left
    by an interrupted run is never taken for a model folder.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    shard = model_dir / SINGLE_SHARD_NAME
    partial = shard.with_name(shard.name + ".partial")
    items = ((key, state_dict[key] if dtype is None else state_dict[key].to(dtype)) for key in state_dict)
    try:
        save_tensors(partial, items)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, shard)
    with open(model_dir / PARAMS_NAME, "w") as f:
        json.dump(dict(params), f, indent=1)
    return model_dir
