"""A Hugging Face LLaMA folder read as Meta's state dict, one tensor at a time.

The folder save_pretrained writes: `config.json` and the weights as `model.safetensors`, or shards
`model-0000N-of-0000M.safetensors` listed in `model.safetensors.index.json` (the same with
`pytorch_model*.bin`). Safetensors files are read with the `safetensors` package, a tensor at a
time; .bin files are memory-mapped. Tensors come out under Meta's names with the rotary row order
of wq / wk undone (model/files/hf_layout.py), so a Hugging Face folder works wherever a Meta folder does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from safetensors import safe_open

from model.files import PathLike
from model.files.hf_layout import EMBEDDING_KEY, OUTPUT_KEY, MetaName, hf_rows_of, meta_names, params_from_hf_config, to_meta
from model.files.tensor_files import load_tensors

CONFIG_NAME = "config.json"
# (index file, single file, shard pattern) in order of preference: save_pretrained writes one of them
WEIGHT_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors", "model*.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", "pytorch_model*.bin"),
)


def is_hf_folder(model_dir: PathLike) -> bool:
    return (Path(model_dir) / CONFIG_NAME).is_file()


def read_hf_config(model_dir: PathLike) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a Hugging Face model folder holds config.json beside its weights")
    with open(path) as f:
        return json.load(f)


def hf_params(model_dir: PathLike, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """params.json contents (Meta's) for the folder's config.json (`config`: its contents, when
    already read); refused configs name the file."""
    try:
        return params_from_hf_config(read_hf_config(model_dir) if config is None else config)
    except ValueError as error:
        raise ValueError(f"{Path(model_dir) / CONFIG_NAME}: {error}") from error


def hf_weight_files(model_dir: PathLike) -> list[Path]:
    """The folder's weight files: safetensors before .bin; the index file's list when there is one."""
    model_dir = Path(model_dir)
    for index_name, single_name, pattern in WEIGHT_LAYOUTS:
        if (model_dir / index_name).is_file():
            with open(model_dir / index_name) as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
            missing = [name for name in names if not (model_dir / name).is_file()]
            if missing:
                raise FileNotFoundError(f"{model_dir / index_name} lists {', '.join(missing)}, which "
                                        f"{model_dir} lacks: copy every shard of the model into it")
            return [model_dir / name for name in names]
        if (model_dir / single_name).is_file():
            return [model_dir / single_name]
        shards = sorted(model_dir.glob(pattern))
        if shards:
            return shards
    raise FileNotFoundError(f"no weights in {model_dir}: a Hugging Face folder holds model*.safetensors or "
                            "pytorch_model*.bin (with their .index.json when sharded)")


class _SafetensorsFile:
    def __init__(self, path: Path):
        self.path = path
        self.handle = safe_open(str(path), framework="pt", device="cpu")

    def keys(self) -> list[str]:
        return list(self.handle.keys())

    def tensor(self, key: str) -> torch.Tensor:
        return self.handle.get_tensor(key)

    def shape(self, key: str) -> torch.Size:
        return torch.Size(self.handle.get_slice(key).get_shape())

    def rows(self, key: str, index: Sequence[int]) -> torch.Tensor:
        view = self.handle.get_slice(key)  # reads only the rows asked for
        return torch.stack([view[row] for row in index])


class _TorchFile:
    def __init__(self, path: Path):
        self.path = path
        self.state = load_tensors(path)  # memory-mapped

    def keys(self) -> list[str]:
        return list(self.state)

    def tensor(self, key: str) -> torch.Tensor:
        return self.state[key]

    def shape(self, key: str) -> torch.Size:
        return self.state[key].shape

    def rows(self, key: str, index: Sequence[int]) -> torch.Tensor:
        return self.state[key][list(index)]


class HFLlamaState(Mapping[str, torch.Tensor]):
    """Meta's state dict of a Hugging Face LLaMA folder; each tensor is read (and its rotary row
    order undone) when it is asked for."""

    def __init__(self, model_dir: PathLike):
        self.model_dir = Path(model_dir)
        config = read_hf_config(model_dir)
        self.params = hf_params(model_dir, config)
        files = [_SafetensorsFile(p) if p.suffix == ".safetensors" else _TorchFile(p) for p in hf_weight_files(model_dir)]
        file_of: dict[str, Any] = {}
        for file in files:
            for key in file.keys():
                if key in file_of:
                    raise ValueError(f"{key} is in both {file_of[key].path} and {file.path}: "
                                     f"{model_dir} mixes the weight files of two saves")
                file_of[key] = file
        try:
            names = meta_names(list(file_of), self.params)
        except ValueError as error:
            raise ValueError(f"{model_dir}: {error}; is it a LlamaForCausalLM folder?") from error
        self._entries = {key: (file_of[hf_key], hf_key, name) for key, (hf_key, name) in names.items()}
        if OUTPUT_KEY not in self._entries and config.get("tie_word_embeddings") and EMBEDDING_KEY in self._entries:
            self._entries[OUTPUT_KEY] = self._entries[EMBEDDING_KEY]  # tied: the output layer is the embedding

    def _entry(self, key: str) -> tuple[Any, str, MetaName]:
        if key not in self._entries:
            raise KeyError(key)
        return self._entries[key]

    def __getitem__(self, key: str) -> torch.Tensor:
        file, hf_key, name = self._entry(key)
        return to_meta(file.tensor(hf_key), name)

    def shape(self, key: str) -> torch.Size:
        """self[key].shape, without reading the tensor."""
        file, hf_key, _ = self._entry(key)
        return file.shape(hf_key)

    def rows(self, key: str, index: Sequence[int]) -> torch.Tensor:
        """self[key][index] (rows along dim 0), reading only those rows."""
        file, hf_key, name = self._entry(key)
        if name.rotary_heads is None:
            return file.rows(hf_key, index)
        n_rows = self.params["dim"] // self.params["n_heads"] * name.rotary_heads
        return file.rows(hf_key, hf_rows_of(index, n_rows, name.rotary_heads))

    def __contains__(self, key: object) -> bool:
        return key in self._entries  # Mapping's own __contains__ would read the tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

