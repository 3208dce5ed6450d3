"""Loading the files users have into ImageBindLLM: LLaMA folders, the ImageBind file, adapter checkpoints.

- A LLaMA folder `LLAMA_DIR/<llama_type>/` is in Meta's layout (params.json, consolidated.NN.pth)
  or Hugging Face's (config.json, safetensors or .bin): model/llama_folder.py reads either.
- The ImageBind weights come from a file the user names; a missing file is an error, never
  random weights.
- Adapter checkpoints hold the released layout under 'model' (older files spell 'llama.' as
  'llma.'); ours also record 'params', 'imagebind_args', 'llama_type' and 'base', the base record
  that loading checks against the LLaMA loaded (model/base_record.py).

Files are read with mmap and copied tensor by tensor into a model built on the meta device and
then allocated once (build_from_files), so 7B never sits in host memory twice in float32.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from model.adapter import ImageBindLLM
from model.base_record import check_base, fingerprint
from model.llama import LoRADown, ModelArgs, Transformer
from model.llama_folder import choose_llama_type, llama_model_dir, llama_state_dict, load_tokenizer, read_params
from model.tensor_files import load_tensors

logger = logging.getLogger(__name__)

LEGACY_PREFIX, PREFIX = "llma.", "llama."

PathLike = str | os.PathLike


# -- reading files ---------------------------------------------------------------------------------

def read_imagebind_state_dict(path: PathLike) -> Mapping[str, torch.Tensor]:
    """The ImageBind weights at `path` (e.g. imagebind_huge.pth)."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"ImageBind weights not found at {path}: put imagebind_huge.pth there (the public ImageBind-Huge "
            "checkpoint) or pass its path (--imagebind_path, or imagebind_path= in model.load)"
        )
    return load_tensors(path)


@dataclass
class AdapterCheckpoint:
    """An adapter checkpoint: the released layout plus what our training recorded (None if absent)."""

    path: str
    model: dict[str, torch.Tensor]
    params: dict[str, Any] | None = None
    imagebind_args: dict[str, Any] | None = None
    llama_type: str | None = None
    base: dict[str, Any] | None = None
    """The base record ({'llama_type', 'params', 'fingerprint'}: model/base_record.py); None in older files."""

    def recorded_base(self) -> dict[str, Any] | None:
        """The base record, else what older checkpoints of ours recorded (llama_type, params), else None."""
        if self.base is not None:
            return self.base
        if self.llama_type is None and self.params is None:
            return None
        return {"llama_type": self.llama_type, "params": self.params, "fingerprint": None}


def read_adapter_checkpoint(path: PathLike) -> AdapterCheckpoint:
    """Read a released file ({'model': {...}}, 'llma.' or 'llama.') or one of our training checkpoints."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"adapter checkpoint not found: {path}")
    raw = load_tensors(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), Mapping):
        raise ValueError(f"{path}: expected a dict with the tensors under 'model' (the released layout), "
                         f"found {type(raw).__name__} with keys {list(raw)[:5] if isinstance(raw, dict) else '-'}")
    model = {}
    for key, tensor in raw["model"].items():
        model[PREFIX + key[len(LEGACY_PREFIX):] if key.startswith(LEGACY_PREFIX) else key] = tensor
    return AdapterCheckpoint(str(path), model, raw.get("params"), raw.get("imagebind_args"), raw.get("llama_type"),
                             raw.get("base"))


# -- copying into a model --------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What a copy_state_dict call did, by key."""

    what: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def forbid_missing(self) -> None:
        if self.missing:
            raise KeyError(f"{self.what} lacks {len(self.missing)} tensors the model needs, e.g. "
                           f"{', '.join(self.missing[:5])}: is it the right file for this model?")

    def forbid_unexpected(self) -> None:
        if self.unexpected:
            raise KeyError(f"{self.what} holds {len(self.unexpected)} tensors this model does not have, e.g. "
                           f"{', '.join(self.unexpected[:5])}: is it the right file, phase and size?")


def _summary(keys: list[str]) -> str:
    return f"{len(keys)}" + (f" ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})" if keys else "")


def copy_state_dict(module: nn.Module, source: Mapping[str, torch.Tensor], what: str,
                    expected: Iterable[str] | None = None) -> LoadReport:
    """Copy every tensor of `source` into `module`'s tensor of that name (converting dtype and device).

    A shape mismatch raises, naming the key and both shapes. Returns (and logs) which keys were
    loaded, which `expected` keys (default: all of the module's) the source lacks, and which
    source keys the module lacks.
    """
    targets = module.state_dict(keep_vars=True)
    report = LoadReport(what)
    with torch.no_grad():
        for key in source:
            if key not in targets:
                report.unexpected.append(key)
                continue
            tensor = source[key]
            if tuple(tensor.shape) != tuple(targets[key].shape):
                raise ValueError(f"{what}: {key} has shape {tuple(tensor.shape)} in the file but "
                                 f"{tuple(targets[key].shape)} in the model; is the file for this model size?")
            targets[key].copy_(tensor)
            report.loaded.append(key)
    loaded = set(report.loaded)
    report.missing = [key for key in (targets if expected is None else expected) if key not in loaded]
    logger.info("%s: loaded %d tensors, missing %s", what, len(report.loaded), _summary(report.missing))
    if report.unexpected:
        logger.warning("%s: %s tensors the model does not have", what, _summary(report.unexpected))
    return report


def meta_llama_keys(args: ModelArgs) -> list[str]:
    """The keys Meta's file holds for this shape: those of a Transformer without any addition."""
    with torch.device("meta"):
        return list(Transformer(replace(args, w_bias=False, w_lora=False, adapter_layers=0)).state_dict())


def apply_adapter_checkpoint(model: ImageBindLLM, checkpoint: AdapterCheckpoint) -> LoadReport:
    """Copy the checkpoint's tensors into the model; tensors the model lacks are an error."""
    report = copy_state_dict(model, checkpoint.model, f"adapter checkpoint {checkpoint.path}",
                             expected=model.state_dict_released())
    report.forbid_unexpected()
    return report


# -- building the model ----------------------------------------------------------------------------

def finetune_key_suffixes() -> set[str]:
    """The names after 'layers.N.' that only fine-tuning adds to LLaMA (biases, LoRA factors): the same
    for every layer and every model size, so a one-layer model on the meta device tells them."""
    args = ModelArgs(dim=8, n_layers=1, n_heads=2, vocab_size=1, multiple_of=1)
    with torch.device("meta"):
        plain = set(Transformer(args).state_dict())
        tuned = set(Transformer(replace(args, w_bias=True, w_lora=True)).state_dict())
    return {key.split(".", 2)[2] for key in tuned - plain}


def phase_of_keys(keys: Iterable[str]) -> str:
    """'finetune' when released-layout keys ('llama.' or 'llma.') hold LLaMA biases or LoRA factors, else 'pretrain'."""
    suffixes = finetune_key_suffixes()
    for key in keys:
        parts = key.split(".", 3)  # 'llama', 'layers', N, rest
        if len(parts) == 4 and parts[0] + "." in (PREFIX, LEGACY_PREFIX) and parts[1] == "layers" and parts[3] in suffixes:
            return "finetune"
    return "pretrain"


def lora_rank_of_checkpoint(checkpoint: AdapterCheckpoint, args: ModelArgs) -> int | None:
    """The rank of the checkpoint's LoRA factors (params.json does not say it); None without LoRA."""
    with torch.device("meta"):
        tuned = Transformer(replace(args, w_lora=True))
    for name, module in tuned.named_modules():
        key = f"{PREFIX}{name}.weight"
        if isinstance(module, LoRADown) and key in checkpoint.model:
            return checkpoint.model[key].shape[0]
    return None


def build_from_files(llama_dir: PathLike, llama_type: str | None, imagebind_path: PathLike, phase: str,
                     imagebind_args: Mapping[str, Any] | None = None, device: torch.device | str = "cpu",
                     frozen_dtype: torch.dtype = torch.float32,
                     checkpoint: PathLike | AdapterCheckpoint | None = None) -> ImageBindLLM:
    """ImageBindLLM for `phase` with the frozen weights from files and, if given, an adapter checkpoint.

    The model is built on the meta device, allocated once on `device`, the tensors that no file
    holds are initialised as the reference does, then the LLaMA folder (LLAMA_DIR/<llama_type>, in
    Meta's or Hugging Face's layout; tokenizer: see llama_folder.tokenizer_path), the ImageBind file
    and the checkpoint are copied in. A checkpoint is first checked against the LLaMA loaded
    (base_record.check_base: a loud warning when it was trained on another base).
    llama_type None: see choose_llama_type. imagebind_args None: the checkpoint's record, else Huge.
    """
    if checkpoint is not None and not isinstance(checkpoint, AdapterCheckpoint):
        checkpoint = read_adapter_checkpoint(checkpoint)
    llama_type = llama_type or choose_llama_type(llama_dir, checkpoint.llama_type if checkpoint else None)
    model_dir = llama_model_dir(llama_dir, llama_type)
    tokenizer = load_tokenizer(llama_dir, model_dir)
    params = read_params(model_dir)
    llama_state = llama_state_dict(model_dir)
    if checkpoint is not None:
        loaded = {"llama_type": llama_type, "params": params, "fingerprint": fingerprint(llama_state)}
        check_base(f"checkpoint {checkpoint.path}", checkpoint.recorded_base(), loaded, model_dir)
    if imagebind_args is None and checkpoint is not None:
        imagebind_args = checkpoint.imagebind_args
    args = ModelArgs.from_params(params, vocab_size=tokenizer.n_words)
    lora_rank = lora_rank_of_checkpoint(checkpoint, args) if checkpoint is not None else None
    if lora_rank is not None:
        args = replace(args, lora_rank=lora_rank)

    with torch.device("meta"):
        model = ImageBindLLM(args, phase, imagebind_args, tokenizer, frozen_dtype)
    model.to_empty(device=device)  # the rotary tables are recomputed by Transformer._apply
    model.reset_adapter_parameters()

    copy_state_dict(model.llama, llama_state, f"LLaMA {model_dir}",
                    expected=meta_llama_keys(model.llama.args)).forbid_missing()
    copy_state_dict(model.image_bind, read_imagebind_state_dict(imagebind_path),
                    f"ImageBind {imagebind_path}").forbid_missing()
    model.forget_cached_embeddings()
    if checkpoint is not None:
        apply_adapter_checkpoint(model, checkpoint)
    return model
