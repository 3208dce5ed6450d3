"""What a checkpoint file holds, told from its keys without building a model (`python -m model.convert inspect`).

The file is memory-mapped, so sizes come from the tensors' shapes and nothing is read but the
pickle. Layouts told apart:

    released pretrain / finetune   {'model': {adapter keys}} as 7B-pretrained.pth / 7B.pth (the
                                   published code's training files add 'optimizer', 'epoch', ...)
    our training checkpoint        the same 'model' plus our record ('format_version', 'phase', 'base', ...)
    Meta LLaMA shard               consolidated.NN.pth: tok_embeddings, layers.N..., norm, output
    Hugging Face LLaMA shard       pytorch_model*.bin: model.embed_tokens, model.layers.N..., lm_head
    ImageBind                      imagebind_huge.pth: modality_preprocessors, modality_trunks, ...
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from model.files import PathLike
from model.files.base_record import DEFAULT_LLAMA_TYPE
from model.files.tensor_files import load_tensors
from model.layout import BRIDGE_MODULES, LEGACY_PREFIX, PREFIX, PREFIX_MODULE, phase_of_keys

RELEASED_PRETRAIN, RELEASED_FINETUNE = "released pretrain", "released finetune"
TRAINING_CHECKPOINT = "our training checkpoint"
META_SHARD, HF_SHARD, IMAGEBIND, UNKNOWN = "Meta LLaMA shard", "Hugging Face LLaMA shard", "ImageBind", "unknown"

# Keys only our training checkpoints hold at the top level (engine/checkpoint.py, model/files/base_record.py).
OUR_RECORD_KEYS = ("format_version", "phase", "base")
POSITION_KEYS = ("epoch", "step_in_epoch", "global_step")
_ADAPTER_TOP_MODULES = set(BRIDGE_MODULES) | {PREFIX_MODULE}
_META_TOP_MODULES = {"tok_embeddings", "layers", "norm", "output", "rope"}
_HF_TOP_PREFIXES = ("model.", "lm_head.")
# point_trunk: the 3D branch of imagebind_w3D.pth (model/imagebind/points.py)
_IMAGEBIND_TOP_MODULES = {"modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors",
                          "point_trunk"}


@dataclass
class TensorStats:
    """How many tensors, how many values and bytes, and which dtypes."""

    count: int = 0
    values: int = 0
    bytes: int = 0
    dtypes: Counter = field(default_factory=Counter)

    def add(self, tensor: torch.Tensor) -> None:
        self.count += 1
        self.values += tensor.numel()
        self.bytes += tensor.numel() * tensor.element_size()
        self.dtypes[str(tensor.dtype).removeprefix("torch.")] += 1


@dataclass
class FileSummary:
    path: str
    layout: str
    phase: str | None
    weights: TensorStats
    """The model's tensors ('model' of an adapter checkpoint, else the whole file)."""
    other: TensorStats
    """Every other tensor (an optimizer's state, ...)."""
    base: dict[str, Any] | None
    """The base record (llama_type, params, fingerprint); None: the file records none (the released files)."""
    position: dict[str, int]
    """epoch, step_in_epoch, global_step: those present."""
    top_level_keys: list[str]


def _tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


def _stats(value: Any) -> TensorStats:
    stats = TensorStats()
    for tensor in _tensors_in(value):
        stats.add(tensor)
    return stats


def _top_modules(keys: list[str]) -> set[str]:
    return {key.split(".", 1)[0] for key in keys}


def is_adapter_file(raw: Any) -> bool:
    """Whether torch.load's `raw` is an adapter checkpoint: the released layout under 'model'."""
    return isinstance(raw, Mapping) and _is_adapter_state(raw.get("model"))


def _is_adapter_state(state: Any) -> bool:
    if not isinstance(state, Mapping) or not state:
        return False
    keys = list(state)
    return any(key.startswith((PREFIX, LEGACY_PREFIX)) for key in keys) or bool(_top_modules(keys) & _ADAPTER_TOP_MODULES)


def flat_layout(raw: Any) -> str:
    """What a file that is not an adapter checkpoint holds: IMAGEBIND, META_SHARD, HF_SHARD or UNKNOWN."""
    keys = list(raw) if isinstance(raw, Mapping) else []
    if not keys or not all(isinstance(key, str) for key in keys):
        return UNKNOWN
    top = _top_modules(keys)
    if top and top <= _IMAGEBIND_TOP_MODULES:
        return IMAGEBIND
    if top and top <= _META_TOP_MODULES and "layers" in top:
        return META_SHARD
    if keys and all(key.startswith(_HF_TOP_PREFIXES) for key in keys):
        return HF_SHARD
    return UNKNOWN


def summarize_file(path: PathLike) -> FileSummary:
    """Describe the torch.save file at `path` (memory-mapped; nothing is built)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        raw = load_tensors(path)
    except Exception as error:  # torch.load fails in many ways on what is not its file; one message for all
        raise ValueError(f"{path} is not a file torch.load can read ({type(error).__name__}: {error})") from error
    if is_adapter_file(raw):
        ours = any(key in raw for key in OUR_RECORD_KEYS)
        phase = raw.get("phase") if ours and raw.get("phase") else phase_of_keys(raw["model"])
        layout = TRAINING_CHECKPOINT if ours else RELEASED_FINETUNE if phase == "finetune" else RELEASED_PRETRAIN
        others = {key: value for key, value in raw.items() if key != "model"}
        return FileSummary(str(path), layout, phase, _stats(raw["model"]), _stats(others), raw.get("base"),
                           {key: int(raw[key]) for key in POSITION_KEYS if isinstance(raw.get(key), int)}, list(raw))
    keys = list(raw) if isinstance(raw, Mapping) else []
    return FileSummary(str(path), flat_layout(raw), None, _stats(raw), TensorStats(), None, {}, keys)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.2f} MiB"


def _stats_line(stats: TensorStats) -> str:
    dtypes = ", ".join(f"{name} x{count}" for name, count in stats.dtypes.most_common())
    return f"{stats.count} ({stats.values:,} values, {_size(stats.bytes)}; {dtypes or 'none'})"


def _base_line(base: dict[str, Any] | None) -> str:
    if base is None:
        return f"none recorded (the released files were trained on {DEFAULT_LLAMA_TYPE}, Open-Chinese-LLaMA-7B)"
    params = base["params"]
    shape = " ".join(f"{key}={params[key]}" for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size")
                     if key in params)
    return (f"{base['llama_type']}, fingerprint {base['fingerprint']}"
            + (f", params {shape}" if shape else ""))


def _position_line(position: dict[str, int]) -> str:
    """Where a training checkpoint stands, epochs counted from 1 (its 'epoch' is the epochs done)."""
    done, step, global_step = (position.get(key) for key in POSITION_KEYS)
    if done is None:
        return ", ".join(f"{key} {value}" for key, value in position.items())
    where = f"after epoch {done}" if not step else f"epoch {done + 1}, after step {step}"
    return where + (f" (global step {global_step})" if global_step is not None else "")


def format_summary(summary: FileSummary) -> str:
    """The summary as the inspect command prints it, one fact a line."""
    lines = [f"file:          {summary.path}", f"layout:        {summary.layout}"]
    if summary.phase is not None:
        lines.append(f"phase:         {summary.phase}")
    lines.append(f"tensors:       {_stats_line(summary.weights)}")
    if summary.other.count:
        lines.append(f"other tensors: {_stats_line(summary.other)} (optimizer state and the like)")
    if summary.layout in (RELEASED_PRETRAIN, RELEASED_FINETUNE, TRAINING_CHECKPOINT):
        lines.append(f"base:          {_base_line(summary.base)}")
    if summary.position:
        lines.append("position:      " + _position_line(summary.position))
    lines.append(f"top-level keys: {', '.join(map(str, summary.top_level_keys[:20]))}"
                 + (f", ... ({len(summary.top_level_keys)} in all)" if len(summary.top_level_keys) > 20 else ""))
    return "\n".join(lines)
