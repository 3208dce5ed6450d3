"""Loading the files users have into ImageBindLLM: LLaMA folders, the ImageBind file, adapter checkpoints.

- A LLaMA folder `LLAMA_DIR/<llama_type>/` holds Meta's `params.json` and `consolidated.NN.pth`
  model-parallel shards (read_params, llama_shard_paths, merged_llama_state_dict).
- The ImageBind weights come from a file the user names; a missing file is an error, never
  random weights.
- Adapter checkpoints hold the released layout under 'model' (older files spell 'llama.' as
  'llma.'); ours also record 'params', 'imagebind_args' and 'llama_type' (read_adapter_checkpoint).

Files are read with mmap and copied tensor by tensor into a model built on the meta device and
then allocated once (build_from_files), so 7B never sits in host memory twice in float32.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from model.adapter import ImageBindLLM
from model.llama import LoRADown, ModelArgs, Transformer
from model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

DEFAULT_LLAMA_TYPE = "7B_chinese"  # the reference's default; the released checkpoints were trained on it
LLAMA_SHARD_GLOB = "consolidated.*.pth"
LEGACY_PREFIX, PREFIX = "llma.", "llama."
IGNORED_LLAMA_KEYS = ("rope.freqs",)  # Meta's precomputed rotary table: recomputed, never read

# How Meta's model-parallel layers split a weight across shards (fairscale's layer types):
# ColumnParallelLinear along its output rows, RowParallelLinear along its input columns,
# ParallelEmbedding along the embedding width. Norms are replicated.
_SHARD_DIM_BY_MODULE = {
    "wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
    "wo": 1, "w2": 1, "tok_embeddings": 1,
    "attention_norm": None, "ffn_norm": None, "norm": None,
}

PathLike = str | os.PathLike


# -- reading files ---------------------------------------------------------------------------------

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


def read_params(model_dir: PathLike) -> dict[str, Any]:
    """The contents of `model_dir/params.json`."""
    path = Path(model_dir) / "params.json"
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

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.keys_in_order:
            raise KeyError(key)
        if len(self.shards) == 1:
            return self.shards[0][key]
        dim = shard_dim(key)
        if dim is None:
            return self.shards[0][key]
        return torch.cat([shard[key] for shard in self.shards], dim=dim)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_in_order)

    def __len__(self) -> int:
        return len(self.keys_in_order)


def merged_llama_state_dict(model_dir: PathLike) -> MergedShards:
    """Meta's state dict of a LLaMA folder, shards merged on reading, 'rope.freqs' left out."""
    paths = llama_shard_paths(model_dir)
    logger.info("reading LLaMA weights from %s (%d shard%s)", model_dir, len(paths), "s" * (len(paths) > 1))
    return MergedShards([load_tensors(p) for p in paths], [str(p) for p in paths])


def write_llama_folder(model_dir: PathLike, state_dict: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> Path:
    """Write Meta's layout: model_dir/params.json and one shard, consolidated.00.pth. Returns model_dir."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "params.json", "w") as f:
        json.dump(dict(params), f, indent=1)
    torch.save({key: tensor.detach().contiguous() for key, tensor in state_dict.items()}, model_dir / "consolidated.00.pth")
    return model_dir


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
    return AdapterCheckpoint(str(path), model, raw.get("params"), raw.get("imagebind_args"), raw.get("llama_type"))


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


# -- choosing files and building the model ----------------------------------------------------------

def choose_llama_type(llama_dir: PathLike, recorded: str | None = None) -> str:
    """The base the checkpoint records, else the only model folder in llama_dir, else 7B_chinese."""
    if recorded:
        return recorded
    folders = [d.name for d in Path(llama_dir).iterdir() if (d / "params.json").is_file()] if Path(llama_dir).is_dir() else []
    if len(folders) == 1:
        return folders[0]
    return DEFAULT_LLAMA_TYPE


def llama_model_dir(llama_dir: PathLike, llama_type: str) -> Path:
    """LLAMA_DIR/<llama_type>, or an error that lists what LLAMA_DIR holds."""
    llama_dir = Path(llama_dir)
    model_dir = llama_dir / llama_type
    if not (model_dir / "params.json").is_file():
        held = sorted(p.name for p in llama_dir.iterdir()) if llama_dir.is_dir() else []
        raise FileNotFoundError(
            f"no LLaMA model folder {model_dir} (with params.json): {llama_dir} holds "
            f"{', '.join(held) if held else 'nothing' if llama_dir.is_dir() else 'nothing: it does not exist'}; "
            "pass --llama_type / llama_type= naming one of its model folders"
        )
    return model_dir


def _args_from_params(params: Mapping[str, Any]) -> ModelArgs:
    args = ModelArgs.from_params(params)
    return replace(args, vocab_size=1) if args.vocab_size == -1 else args  # the vocabulary decides no key


def phase_of_checkpoint(checkpoint: AdapterCheckpoint, params: Mapping[str, Any]) -> str:
    """'finetune' when the checkpoint holds LLaMA biases or LoRA factors, else 'pretrain'."""
    args = _args_from_params(params)
    with torch.device("meta"):
        plain = set(Transformer(replace(args, w_bias=False, w_lora=False)).state_dict())
        tuned = set(Transformer(replace(args, w_bias=True, w_lora=True)).state_dict())
    finetune_keys = {PREFIX + key for key in tuned - plain}
    return "finetune" if finetune_keys & set(checkpoint.model) else "pretrain"


def lora_rank_of_checkpoint(checkpoint: AdapterCheckpoint, params: Mapping[str, Any]) -> int | None:
    """The rank of the checkpoint's LoRA factors (params.json does not say it); None without LoRA."""
    with torch.device("meta"):
        tuned = Transformer(replace(_args_from_params(params), w_lora=True))
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
    holds are initialised as the reference does, then the LLaMA folder (LLAMA_DIR/<llama_type>,
    tokenizer LLAMA_DIR/tokenizer.model), the ImageBind file and the checkpoint are copied in.
    llama_type None: see choose_llama_type. imagebind_args None: the checkpoint's record, else Huge.
    """
    if checkpoint is not None and not isinstance(checkpoint, AdapterCheckpoint):
        checkpoint = read_adapter_checkpoint(checkpoint)
    recorded_type = checkpoint.llama_type if checkpoint else None
    if llama_type and recorded_type and llama_type != recorded_type:
        logger.warning("checkpoint %s was trained on LLaMA %r but %r was asked for", checkpoint.path, recorded_type, llama_type)
    model_dir = llama_model_dir(llama_dir, llama_type or choose_llama_type(llama_dir, recorded_type))
    tokenizer = Tokenizer(Path(llama_dir) / "tokenizer.model")
    params = read_params(model_dir)
    if checkpoint and checkpoint.params is not None and checkpoint.params != params:
        logger.warning("checkpoint %s recorded params.json %s but %s holds %s", checkpoint.path, checkpoint.params, model_dir, params)
    if imagebind_args is None and checkpoint is not None:
        imagebind_args = checkpoint.imagebind_args
    args = ModelArgs.from_params(params, vocab_size=tokenizer.n_words)
    lora_rank = lora_rank_of_checkpoint(checkpoint, params) if checkpoint is not None else None
    if lora_rank is not None:
        args = replace(args, lora_rank=lora_rank)

    with torch.device("meta"):
        model = ImageBindLLM(args, phase, imagebind_args, tokenizer, frozen_dtype)
    model.to_empty(device=device)  # the rotary tables are recomputed by Transformer._apply
    model.reset_adapter_parameters()

    copy_state_dict(model.llama, merged_llama_state_dict(model_dir), f"LLaMA {model_dir}",
                    expected=meta_llama_keys(model.llama.args)).forbid_missing()
    copy_state_dict(model.image_bind, read_imagebind_state_dict(imagebind_path),
                    f"ImageBind {imagebind_path}").forbid_missing()
    model.forget_cached_embeddings()
    if checkpoint is not None:
        apply_adapter_checkpoint(model, checkpoint)
    return model
