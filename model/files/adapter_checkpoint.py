"""Adapter checkpoints: the released `7B-pretrained.pth` / `7B.pth` and the checkpoints our runs write.

Both hold the released layout under 'model' (older released files spell 'llama.' as 'llma.').
Ours add a record of what they were trained with: 'base' (the LLaMA, with a fingerprint:
model/files/base_record.py), 'imagebind_args', and what resuming needs (engine/checkpoint.py).
The file is opened once, memory-mapped; `contents` keeps the whole dict for whoever needs more
than the model's tensors (resuming), so nobody maps it a second time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from model.files import PathLike
from model.files.tensor_files import load_tensors
from model.llama import LoRADown, ModelArgs, Transformer

LEGACY_PREFIX, PREFIX = "llma.", "llama."


@dataclass
class AdapterCheckpoint:
    """An adapter checkpoint: its tensors under our names, and what our training recorded (None if absent)."""

    path: str
    model: dict[str, torch.Tensor]
    contents: Mapping[str, Any]
    """The whole file as read (memory-mapped tensors): resuming reads its optimizer, sampler, ... state."""

    @property
    def base(self) -> dict[str, Any] | None:
        """The base record ({'llama_type', 'params', 'fingerprint'}); None in the released files."""
        return self.contents.get("base")

    @property
    def llama_type(self) -> str | None:
        return self.base["llama_type"] if self.base else None

    @property
    def imagebind_args(self) -> dict[str, Any] | None:
        """ImageBindModel arguments the run used; None: ImageBind-Huge (and the released files)."""
        return self.contents.get("imagebind_args")

    @property
    def phase(self) -> str:
        """The phase its keys say: 'finetune' when LLaMA's biases or LoRA factors are there."""
        return phase_of_keys(self.model)


def read_adapter_checkpoint(path: PathLike) -> AdapterCheckpoint:
    """Read a released file ({'model': {...}}, 'llma.' or 'llama.') or one of our training checkpoints."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"adapter checkpoint not found: {path}")
    try:
        raw = load_tensors(path)
    except Exception as error:  # torch.load fails in many ways on a file that is not whole
        raise ValueError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); the file may be "
                         "incomplete (copied while being written?) or not a torch checkpoint") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), Mapping):
        raise ValueError(f"{path}: expected a dict with the tensors under 'model' (the released layout), "
                         f"found {type(raw).__name__} with keys {list(raw)[:5] if isinstance(raw, dict) else '-'}")
    model = {}
    for key, tensor in raw["model"].items():
        model[PREFIX + key[len(LEGACY_PREFIX):] if key.startswith(LEGACY_PREFIX) else key] = tensor
    return AdapterCheckpoint(str(path), model, raw)


def _finetune_key_suffixes() -> frozenset[str]:
    """The names after 'layers.N.' that only fine-tuning adds to LLaMA (biases, LoRA factors): the same
    for every layer and every model size, so a one-layer model on the meta device tells them."""
    args = ModelArgs(dim=8, n_layers=1, n_heads=2, vocab_size=1, multiple_of=1)
    with torch.device("meta"):
        plain = set(Transformer(args).state_dict())
        tuned = set(Transformer(replace(args, w_bias=True, w_lora=True)).state_dict())
    return frozenset(key.split(".", 2)[2] for key in tuned - plain)


_FINETUNE_SUFFIXES = _finetune_key_suffixes()


def is_finetune_addition(key: str) -> bool:
    """Whether a released-layout key ('llama.' or 'llma.') is one of LLaMA's biases or LoRA factors."""
    parts = key.split(".", 3)  # 'llama', 'layers', N, rest
    return (len(parts) == 4 and parts[0] + "." in (PREFIX, LEGACY_PREFIX) and parts[1] == "layers"
            and parts[3] in _FINETUNE_SUFFIXES)


def phase_of_keys(keys: Iterable[str]) -> str:
    """'finetune' when released-layout keys hold LLaMA biases or LoRA factors, else 'pretrain'."""
    return "finetune" if any(is_finetune_addition(key) for key in keys) else "pretrain"


def lora_rank_of_checkpoint(checkpoint: AdapterCheckpoint, args: ModelArgs) -> int | None:
    """The rank of the checkpoint's LoRA factors (params.json does not say it); None without LoRA."""
    with torch.device("meta"):
        tuned = Transformer(replace(args, w_lora=True))
    for name, module in tuned.named_modules():
        key = f"{PREFIX}{name}.weight"
        if isinstance(module, LoRADown) and key in checkpoint.model:
            return checkpoint.model[key].shape[0]
    return None
