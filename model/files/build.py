"""Building ImageBindLLM from the files users have: a LLaMA folder, the ImageBind file, an adapter checkpoint.

- A LLaMA folder `LLAMA_DIR/<llama_type>/` is in Meta's layout (params.json, consolidated.NN.pth)
  or Hugging Face's (config.json, safetensors or .bin): model/files/llama_folder.py reads either.
- The ImageBind weights come from a file the user names; a missing file is an error, never
  random weights.
- An adapter checkpoint (model/files/adapter_checkpoint.py) is checked against the LLaMA loaded
  (its base record: model/files/base_record.py), then copied in.

Files are read with mmap and copied tensor by tensor into a model built on the meta device and
then allocated once (build_model), so 7B never sits in host memory twice in float32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from model.adapter import ImageBindLLM
from model.files import PathLike
from model.files.adapter_checkpoint import AdapterCheckpoint, lora_rank_of_checkpoint, read_adapter_checkpoint
from model.files.base_record import check_base
from model.files.llama_folder import LlamaFolder, open_llama_folder
from model.files.tensor_files import load_tensors
from model.imagebind.model import IMAGEBIND_HUGE_ARGS
from model.layout import is_finetune_addition
from model.llama import ModelArgs, Transformer
from model.meta_device import on_meta_device

logger = logging.getLogger(__name__)

POINT_TRUNK_PREFIX = "point_trunk."  # the 3D branch's trunk in imagebind_w3D.pth


def read_imagebind_state_dict(path: PathLike) -> Mapping[str, torch.Tensor]:
    """The ImageBind weights at `path` (e.g. imagebind_huge.pth)."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"ImageBind weights not found at {path}: put imagebind_huge.pth there (the public ImageBind-Huge "
            "checkpoint) or pass its path (--imagebind_path, or imagebind_path= in model.load)"
        )
    return load_tensors(path)


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
                    expected: Iterable[str] | None = None, fresh: Iterable[str] = ()) -> LoadReport:
    """Copy every tensor of `source` into `module`'s tensor of that name (converting dtype and device).

    A shape mismatch raises, naming the key and both shapes. Returns (and logs) which keys were
    loaded, which `expected` keys (default: all of the module's) the source lacks, and which
    source keys the module lacks. Absent keys in `fresh` are meant to start from their initial
    values (fine-tuning's biases and LoRA, which a pre-training file has not): not "missing".
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
    loaded, fresh = set(report.loaded), set(fresh)
    absent = [key for key in (targets if expected is None else expected) if key not in loaded]
    report.missing = [key for key in absent if key not in fresh]
    logger.info("%s: loaded %d tensors%s", what, len(report.loaded),
                f", missing {_summary(report.missing)}" if report.missing else "")
    if len(absent) > len(report.missing):
        logger.info("fine-tuning adds LLaMA's biases and LoRA factors: %d tensors start at their initial values "
                    "(zero biases, zero LoRA up-projections), as in the published code",
                    len(absent) - len(report.missing))
    if report.unexpected:
        logger.warning("%s: %s tensors the model does not have", what, _summary(report.unexpected))
    return report


def meta_llama_keys(args: ModelArgs) -> list[str]:
    """The keys Meta's file holds for this shape: those of a Transformer without any addition."""
    with on_meta_device():
        return list(Transformer(replace(args, w_bias=False, w_lora=False, adapter_layers=0)).state_dict())


def apply_adapter_checkpoint(model: ImageBindLLM, checkpoint: AdapterCheckpoint) -> LoadReport:
    """Copy the checkpoint's tensors into the model; tensors the model lacks are an error."""
    fresh = [key for key in model.state_dict_released() if is_finetune_addition(key)]
    report = copy_state_dict(model, checkpoint.model, f"adapter checkpoint {checkpoint.path}",
                             expected=model.state_dict_released(), fresh=fresh)
    report.forbid_unexpected()
    return report


# -- building the model ----------------------------------------------------------------------------

def _with_point_branch(imagebind_args: Mapping[str, Any] | None, state: Mapping[str, torch.Tensor],
                       path: PathLike) -> Mapping[str, Any] | None:
    """The ImageBind arguments, with the 3D point branch when the file holds it (imagebind_w3D.pth)."""
    if not any(key.startswith(POINT_TRUNK_PREFIX) for key in state):
        return imagebind_args
    if imagebind_args is not None and imagebind_args.get("point_branch"):
        return imagebind_args
    logger.info("ImageBind %s holds the 3D point branch: building it too", path)
    return {**(IMAGEBIND_HUGE_ARGS if imagebind_args is None else imagebind_args), "point_branch": True}


def build_model(llama: LlamaFolder, imagebind_path: PathLike, phase: str,
                imagebind_args: Mapping[str, Any] | None = None, device: torch.device | str = "cpu",
                frozen_dtype: torch.dtype = torch.float32, checkpoint: AdapterCheckpoint | None = None) -> ImageBindLLM:
    """ImageBindLLM for `phase` with the frozen weights from files and, if given, an adapter checkpoint.

    The model is built on the meta device, allocated once on `device`, the tensors that no file
    holds are initialised as the reference does, then the LLaMA folder, the ImageBind file and the
    checkpoint are copied in. A checkpoint is first checked against the LLaMA loaded
    (base_record.check_base: a loud warning when it was trained on another base).
    imagebind_args None: the checkpoint's record, else ImageBind-Huge.
    """
    if checkpoint is not None:
        check_base(f"checkpoint {checkpoint.path}", checkpoint.base, llama.base_record, llama.model_dir)
        if imagebind_args is None:
            imagebind_args = checkpoint.imagebind_args
    imagebind_state = read_imagebind_state_dict(imagebind_path)
    imagebind_args = _with_point_branch(imagebind_args, imagebind_state, imagebind_path)
    tokenizer = llama.tokenizer()
    args = ModelArgs.from_params(llama.params, vocab_size=tokenizer.n_words)
    lora_rank = lora_rank_of_checkpoint(checkpoint, args) if checkpoint is not None else None
    if lora_rank is not None:
        args = replace(args, lora_rank=lora_rank)

    with on_meta_device():
        model = ImageBindLLM(args, phase, imagebind_args, tokenizer, frozen_dtype)
    model.to_empty(device=device)  # the rotary tables are recomputed by Transformer._apply
    model.reset_adapter_parameters()

    copy_state_dict(model.llama, llama.state, f"LLaMA {llama.model_dir}",
                    expected=meta_llama_keys(model.llama.args)).forbid_missing()
    copy_state_dict(model.image_bind, imagebind_state, f"ImageBind {imagebind_path}").forbid_missing()
    model.forget_cached_embeddings()
    if checkpoint is not None:
        apply_adapter_checkpoint(model, checkpoint)
    return model


def build_from_files(llama_dir: PathLike, llama_type: str | None, imagebind_path: PathLike, phase: str,
                     imagebind_args: Mapping[str, Any] | None = None, device: torch.device | str = "cpu",
                     frozen_dtype: torch.dtype = torch.float32,
                     checkpoint: PathLike | AdapterCheckpoint | None = None) -> ImageBindLLM:
    """build_model from paths: llama_type None is the checkpoint's recorded base, else the only model
    folder in llama_dir, else 7B_chinese (llama_folder.choose_llama_type)."""
    if checkpoint is not None and not isinstance(checkpoint, AdapterCheckpoint):
        checkpoint = read_adapter_checkpoint(checkpoint)
    llama = open_llama_folder(llama_dir, llama_type, checkpoint.llama_type if checkpoint is not None else None)
    return build_model(llama, imagebind_path, phase, imagebind_args, device, frozen_dtype, checkpoint)
