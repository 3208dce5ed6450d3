"""The model a run trains: built from the user's files, then shaped for speed and memory.

The adapter tensors come from an adapter checkpoint: the run's own when it resumes (its released
layout holds every tensor the LLaMA and ImageBind files do not), else for fine-tuning the
pre-training checkpoint (--pretrained_path), else none (pre-training from scratch: the adapter is
initialised as the reference does). Loading goes through model/files/build.py, the same path as
`model.load`; the run hands in the LLaMA folder and the checkpoint it has already opened.

`prepare_for_training` then shapes the loaded model without changing what it computes: only
ImageBind's vision branch stays, and --activation_checkpointing and --compile take effect.

--compile: torch.compile block by block, so that one compiled graph serves all the layers.

The unit that repeats is the block. LLaMA's layers share one graph per input shape (two in fact:
layer 0's input needs no gradient, the token embedding being frozen, and torch guards on that),
ImageBind's vision blocks share another. Compiling the whole model instead would trace every
layer's copy of the same code and recompile it all for every new sequence length.

Shapes. With sequence lengths in buckets (--pad_to_multiple > 1) LLaMA's blocks are specialised
to each length (dynamic=False): a few graphs, each with kernels made for its exact shape. Without
buckets every length would compile anew, so the shape is left to torch, which makes it dynamic
once it has seen a second length. ImageBind meets as many images as a batch has rows with one:
left to torch too.

fullgraph=True: the blocks have no graph break (tests/test_speed_compile.py checks), and should
one appear with another torch release, the first step fails naming its cause instead of quietly
running slower.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine.precision import DTYPES
from model.adapter import ImageBindLLM
from model.files.adapter_checkpoint import AdapterCheckpoint
from model.files.build import build_model
from model.files.llama_folder import LlamaFolder
from model.imagebind import ModalityType

logger = logging.getLogger(__name__)


def build_training_model(llama: LlamaFolder, imagebind_path: Path, phase: str, imagebind_args: dict[str, Any] | None,
                         device: torch.device, precision: str, adapter: AdapterCheckpoint | None) -> ImageBindLLM:
    """The model of `phase` on `device`, frozen weights in the run's precision, `adapter` loaded."""
    model = build_model(llama, imagebind_path, phase, imagebind_args=imagebind_args, device=device,
                        frozen_dtype=DTYPES[precision], checkpoint=adapter)
    trainable = sum(param.numel() for param in model.trainable_parameters().values())
    total = sum(param.numel() for param in model.parameters())
    logger.info("model: LLaMA %s, phase %s, %s trainable of %s parameters, frozen weights in %s",
                llama.llama_type, phase, f"{trainable:,}", f"{total:,}", precision)
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


# Graphs one block's code may keep: 2 (layer 0, the others) x buckets (4 when fine-tuning with
# --pad_to_multiple 128) x (training, evaluation) x (full batch, an epoch's shorter last batch)
# stays below this; torch's default (8) does not, and past it the block silently runs eagerly.
RECOMPILE_LIMIT = 64


def compile_blocks(model: ImageBindLLM, pad_to_multiple: int, mode: str | None = None,
                   backend: str | Callable = "inductor") -> None:
    """Compile every LLaMA layer and ImageBind vision block of `model` in place.

    Names and the state dict are unchanged (nn.Module.compile, not a wrapper). `mode` and
    `backend` are torch.compile's (mode None: its default). The compilation itself happens at the
    first call of each shape.
    """
    if pad_to_multiple == 1:
        logger.warning("--compile without --pad_to_multiple: each sequence length compiles its own graph until torch "
                       "makes the length dynamic; pass --pad_to_multiple 32 (pre-training) or 128 (fine-tuning)")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    llama_dynamic = False if pad_to_multiple > 1 else None
    for layer in model.llama.layers:
        layer.compile(dynamic=llama_dynamic, fullgraph=True, mode=mode, backend=backend)
    for block in model.image_bind.modality_trunks[ModalityType.VISION].blocks:
        block.compile(fullgraph=True, mode=mode, backend=backend)
    logger.info("compiling %d LLaMA layers (%s shapes) and %d ImageBind vision blocks at their first calls",
                len(model.llama.layers), "static" if llama_dynamic is False else "dynamic",
                len(model.image_bind.modality_trunks[ModalityType.VISION].blocks))
