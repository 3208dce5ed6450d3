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
from typing import Any, Mapping

import torch

from model.files import PathLike
from model.files.summary import HF_SHARD, IMAGEBIND, META_SHARD, flat_layout, is_adapter_file
from model.files.tensor_files import load_tensors
from model.layout import LEGACY_PREFIX, PREFIX, phase_of_keys
from model.llama import LoRADown, ModelArgs, Transformer
from model.meta_device import on_meta_device

# What to do with a file of another kind that was given as an adapter checkpoint.
_WRONG_KIND_ADVICE = {
    IMAGEBIND: "ImageBind's weights (imagebind_huge.pth), which go to --imagebind_path",
    META_SHARD: "a shard of Meta's LLaMA weights, which stays in its model folder under --llama_path",
    HF_SHARD: "Hugging Face LLaMA weights, which stay in their model folder under --llama_path",
}
ADAPTER_FILES = "7B-pretrained.pth, 7B.pth or a checkpoint-N.pth of a run"


class CheckpointFileError(ValueError):
    """A file given as an adapter checkpoint is not one (or cannot be read); the message says what it is."""



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
    except Exception as error:  # torch.load fails in many ways on what is not its file (its advice misleads)
        raise CheckpointFileError(f"{path} cannot be read as a checkpoint ({type(error).__name__}): it may be "
                                  f"incomplete (copied while being written?) or not a torch file; expected "
                                  f"{ADAPTER_FILES}") from None
    if not is_adapter_file(raw):
        kind = _WRONG_KIND_ADVICE.get(flat_layout(raw), "no adapter tensors under 'model'")
        raise CheckpointFileError(f"{path} is not an adapter checkpoint ({ADAPTER_FILES}): it holds {kind}")
    model = {}
    for key, tensor in raw["model"].items():
        model[PREFIX + key[len(LEGACY_PREFIX):] if key.startswith(LEGACY_PREFIX) else key] = tensor
    return AdapterCheckpoint(str(path), model, raw)


def lora_rank_of_checkpoint(checkpoint: AdapterCheckpoint, args: ModelArgs) -> int | None:
    """The rank of the checkpoint's LoRA factors (params.json does not say it); None without LoRA."""
    with on_meta_device():
        tuned = Transformer(replace(args, w_lora=True))
    for name, module in tuned.named_modules():
        key = f"{PREFIX}{name}.weight"
        if isinstance(module, LoRADown) and key in checkpoint.model:
            return checkpoint.model[key].shape[0]
    return None
