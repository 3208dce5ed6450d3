"""Building the model a run trains, from the user's files and, when there is one, an adapter checkpoint.

The adapter checkpoint is the run's own when it resumes (its released layout holds every tensor
the LLaMA and ImageBind files do not), else for fine-tuning the pre-training checkpoint
(--pretrained_path), else none (pre-training from scratch: the adapter is initialised as the
reference does). Loading goes through model/weights.py, the same path as `model.load`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.precision import DTYPES
from engine.settings import RunSettings
from model.adapter import ImageBindLLM
from model.weights import (
    AdapterCheckpoint,
    build_from_files,
    choose_llama_type,
    llama_model_dir,
    read_adapter_checkpoint,
    read_params,
)

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

