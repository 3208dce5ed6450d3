"""The LLaMA folder users pass as LLAMA_DIR: which model folder to use, and reading it in either layout.

    LLAMA_DIR/tokenizer.model             LLaMA's SentencePiece tokenizer (optional when the model
                                          folder holds its own, as Hugging Face folders do)
    LLAMA_DIR/<llama_type>/               one folder per model, in either layout:
        params.json, consolidated.NN.pth      Meta's (model/files/meta_folder.py)
        config.json, model*.safetensors       Hugging Face's, or pytorch_model*.bin (model/files/hf_folder.py)

A folder is told by its files (Meta's params.json wins when both are there). Either way its
tensors come out under Meta's names, read one at a time.

`open_llama_folder` resolves a model folder once into a `LlamaFolder` (its params, its lazy
tensors, its tokenizer, its base record): building a model and recording the base both take it,
so a run reads and fingerprints its LLaMA folder once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from model.files import PathLike
from model.files.base_record import DEFAULT_LLAMA_TYPE, fingerprint
from model.files.hf_folder import HFLlamaState, hf_params, is_hf_folder
from model.files.meta_folder import is_meta_folder, merged_llama_state_dict, read_meta_params
from model.tokenizer import Tokenizer

TOKENIZER_NAME = "tokenizer.model"
HF_FAST_TOKENIZER_NAME = "tokenizer.json"


def folder_layout(model_dir: PathLike) -> str | None:
    """'meta' (params.json), 'hf' (config.json) or None (not a model folder)."""
    if is_meta_folder(model_dir):
        return "meta"
    if is_hf_folder(model_dir):
        return "hf"
    return None


def read_params(model_dir: PathLike) -> dict[str, Any]:
    """Meta's params.json contents of a model folder (for a Hugging Face folder: made from config.json)."""
    layout = folder_layout(model_dir)
    if layout == "meta":
        return read_meta_params(model_dir)
    if layout == "hf":
        return hf_params(model_dir)
    raise FileNotFoundError(f"{model_dir} is not a LLaMA model folder: it holds neither params.json (Meta's "
                            "layout) nor config.json (Hugging Face's)")


def llama_state_dict(model_dir: PathLike) -> Mapping[str, torch.Tensor]:
    """The folder's tensors under Meta's names, read lazily (rows(key, index) reads a few rows)."""
    if folder_layout(model_dir) == "hf":
        return HFLlamaState(model_dir)
    return merged_llama_state_dict(model_dir)


def model_folders(llama_dir: PathLike) -> list[str]:
    """The names of the model folders in llama_dir, sorted."""
    llama_dir = Path(llama_dir)
    if not llama_dir.is_dir():
        return []
    return sorted(d.name for d in llama_dir.iterdir() if d.is_dir() and folder_layout(d) is not None)


def choose_llama_type(llama_dir: PathLike, recorded: str | None = None) -> str:
    """The base the checkpoint records, else the only model folder in llama_dir, else 7B_chinese."""
    if recorded:
        return recorded
    folders = model_folders(llama_dir)
    return folders[0] if len(folders) == 1 else DEFAULT_LLAMA_TYPE


def llama_model_dir(llama_dir: PathLike, llama_type: str) -> Path:
    """LLAMA_DIR/<llama_type>, or an error that lists what LLAMA_DIR holds."""
    llama_dir = Path(llama_dir)
    model_dir = llama_dir / llama_type
    if folder_layout(model_dir) is None:
        held = sorted(p.name for p in llama_dir.iterdir()) if llama_dir.is_dir() else []
        raise FileNotFoundError(
            f"no LLaMA model folder {model_dir} (with params.json, or a Hugging Face config.json): {llama_dir} holds "
            f"{', '.join(held) if held else 'nothing' if llama_dir.is_dir() else 'nothing: it does not exist'}; "
            "pass --llama_type / llama_type= naming one of its model folders"
        )
    return model_dir


def tokenizer_path(llama_dir: PathLike, model_dir: PathLike) -> Path:
    """LLAMA_DIR/tokenizer.model, else the model folder's own tokenizer.model."""
    places = [Path(llama_dir) / TOKENIZER_NAME, Path(model_dir) / TOKENIZER_NAME]
    for path in places:
        if path.is_file():
            return path
    fast_only = (Path(model_dir) / HF_FAST_TOKENIZER_NAME).is_file()
    raise FileNotFoundError(
        f"no SentencePiece tokenizer: neither {places[0]} nor {places[1]} exists"
        + (f"; {model_dir} has only {HF_FAST_TOKENIZER_NAME}, a Hugging Face fast tokenizer (LLaMA-3's is one), "
           "which ImageBind-LLM cannot use: it needs LLaMA's SentencePiece tokenizer.model" if fast_only else
           "; put LLaMA's tokenizer.model in one of them")
    )


def load_tokenizer(llama_dir: PathLike, model_dir: PathLike) -> Tokenizer:
    """The SentencePiece tokenizer for a model folder (see tokenizer_path); another kind is a clear error."""
    path = tokenizer_path(llama_dir, model_dir)
    try:
        return Tokenizer(path)
    except RuntimeError as error:  # SentencePiece could not parse it
        raise ValueError(f"{path} is not a SentencePiece model ({error}); LLaMA-3's tokenizer.model, for one, is "
                         "a tiktoken file: only LLaMA-1 / LLaMA-2 style SentencePiece tokenizers are supported") from error


@dataclass(frozen=True)
class LlamaFolder:
    """One model folder of LLAMA_DIR, resolved: what building a model and recording its base need."""

    llama_dir: Path
    llama_type: str
    model_dir: Path
    params: dict[str, Any]
    """Meta's params.json contents (made from config.json for a Hugging Face folder)."""
    state: Mapping[str, torch.Tensor]
    """The tensors under Meta's names, read when used (memory-mapped)."""

    @property
    def tokenizer_path(self) -> Path:
        return tokenizer_path(self.llama_dir, self.model_dir)

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.llama_dir, self.model_dir)

    @functools.cached_property
    def base_record(self) -> dict[str, Any]:
        """{'llama_type', 'params', 'fingerprint'} (model/files/base_record.py); fingerprinted once."""
        return {"llama_type": self.llama_type, "params": self.params, "fingerprint": fingerprint(self.state)}


def open_llama_folder(llama_dir: PathLike, llama_type: str | None = None, recorded_type: str | None = None) -> LlamaFolder:
    """LLAMA_DIR/<llama_type> resolved; llama_type None: see choose_llama_type (`recorded_type` first)."""
    llama_type = llama_type or choose_llama_type(llama_dir, recorded_type)
    model_dir = llama_model_dir(llama_dir, llama_type)
    return LlamaFolder(Path(llama_dir), llama_type, model_dir, read_params(model_dir), llama_state_dict(model_dir))
