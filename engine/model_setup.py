"""Building the model a run trains, from the user's files and, when there is one, an adapter checkpoint.

The adapter checkpoint is the run's own when it resumes (its released layout holds every tensor
the LLaMA and ImageBind files do not), else for fine-tuning the pre-training checkpoint
(--pretrained_path), else none (pre-training from scratch: the adapter is initialised as the
reference does). Loading goes through model/weights.py, the same path as `model.load`.

`prepare_for_training` then shapes the loaded model for speed and memory, without changing what
it computes: only ImageBind's vision branch stays, and --activation_checkpointing and --compile
take effect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.compilation import compile_blocks
from engine.precision import DTYPES
from engine.settings import RunSettings
from model.adapter import ImageBindLLM
from model.imagebind import ModalityType
from model.llama_folder import choose_llama_type, llama_model_dir, read_params
from model.weights import AdapterCheckpoint, build_from_files, read_adapter_checkpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """The files a run's model comes from, resolved."""

    llama_type: str
    params: dict[str, Any]
    imagebind_args: dict[str, Any] | None
    adapter: AdapterCheckpoint | None


def resolve_model_source(settings: RunSettings, llama_type: str | None, adapter_path: Path | None) -> ModelSource:
    """Read the adapter checkpoint (memory-mapped) and resolve what its record and the flags leave open.

    llama_type None: the base the checkpoint records, else the only model folder, else 7B_chinese.
    ImageBind arguments: --imagebind_config, else the checkpoint's record, else None (Huge).
    """
    adapter = read_adapter_checkpoint(adapter_path) if adapter_path is not None else None
    # A --llama_type other than the recorded one is allowed; loading compares the bases (model/base_record.py).
    recorded_type = adapter.llama_type if adapter is not None else None
    resolved_type = llama_type or choose_llama_type(settings.llama_dir, recorded_type)
    params = read_params(llama_model_dir(settings.llama_dir, resolved_type))
    imagebind_args = settings.imagebind_args
    if imagebind_args is None and adapter is not None:
        imagebind_args = adapter.imagebind_args
    return ModelSource(resolved_type, params, imagebind_args, adapter)


def build_model(settings: RunSettings, source: ModelSource) -> ImageBindLLM:
    """The model of `settings.phase` on the run's device, frozen weights in the run's precision."""
    model = build_from_files(settings.llama_dir, source.llama_type, settings.imagebind_path, settings.phase,
                             imagebind_args=source.imagebind_args, device=settings.device,
                             frozen_dtype=DTYPES[settings.precision], checkpoint=source.adapter)
    trainable = sum(param.numel() for param in model.trainable_parameters().values())
    total = sum(param.numel() for param in model.parameters())
    logger.info("model: LLaMA %s, phase %s, %s trainable of %s parameters, frozen weights in %s",
                source.llama_type, settings.phase, f"{trainable:,}", f"{total:,}", settings.precision)
    return model


@dataclass(frozen=True)
class SpeedSettings:
    """The flags that change how fast the step runs and how much memory it takes, not its result
    (compiled kernels round differently, within float rounding)."""

    compile: bool = False
    activation_checkpointing: bool = False
    pad_to_multiple: int = 1
    compile_mode: str | None = None
    """torch.compile's mode (None: its default); only the benchmark sets another."""


def prepare_for_training(model: ImageBindLLM, speed: SpeedSettings) -> None:
    """Shape a built (and loaded) model for training, in place; see the module docstring.

    Training data holds images only, so ImageBind's other branches (text, audio, depth, thermal,
    IMU: about half the encoder) would only take GPU memory; they are dropped after loading,
    which needs the whole file.
    """
    model.image_bind.keep_modalities([ModalityType.VISION])
    model.llama.activation_checkpointing = speed.activation_checkpointing
    if speed.compile:
        compile_blocks(model, speed.pad_to_multiple, speed.compile_mode)

