"""The ImageBind-LLM model: build it, load the files users have, generate.

    import model
    llm = model.load("7B.pth", "/path/to/llama_dir", "ckpts/imagebind_huge.pth")
    llm.generate({"Image": [pixels, 1]}, [model.format_prompt("Describe the image.")])

The model itself takes tensors only:

    llama.py       LLaMA in Meta's layout (RMSNorm, rotary, SwiGLU, KV cache), biases and LoRA
    adapter.py     ImageBindLLM: ImageBind -> bridge -> gated prefix in every layer; loss, generate
    generation.py  the decoding loop (top-p, per-row end of sequence), streamed token by token
    visual_cache.py  the paper's visual cache: embeddings pulled towards cached image embeddings
    layout.py      which tensors each phase trains, which a released file holds, the phase its keys say
    tokenizer.py   the tokenizer, the prompts and the batch constants data/ shares (its one import here)
    meta_device.py building on the meta device (shapes only) without the initialisers' random fills
    imagebind/     the frozen ImageBind encoder, six modalities
    files/         reading and writing files: LLaMA folders (Meta, Hugging Face), the ImageBind file,
                   adapter checkpoints, the base record, delta merging; building a model from them
    convert.py     python -m model.convert: merge-delta, from-hf, inspect
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, Mapping

import torch

from model.tokenizer import Tokenizer, format_prompt

if TYPE_CHECKING:
    from model.adapter import ImageBindLLM
    from model.llama import ModelArgs

__all__ = ["ImageBindLLM", "ModelArgs", "Tokenizer", "default_device", "default_frozen_dtype", "format_prompt", "load"]

# data/ imports model.tokenizer, which runs this file first: the model's modules load only when
# one of their names is used, so data loader workers do not import the whole model.
_LAZY_NAMES = {"ImageBindLLM": "model.adapter", "ModelArgs": "model.llama"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_frozen_dtype(device: torch.device) -> torch.dtype:
    """The frozen weights' dtype on `device`: bfloat16 on GPUs that support it, float16 on older
    GPUs, float32 on the CPU (engine/precision.py names the same choice as a precision)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load(checkpoint_path: str | os.PathLike, llama_dir: str | os.PathLike, imagebind_path: str | os.PathLike,
         llama_type: str | None = None, imagebind_args: Mapping[str, Any] | None = None,
         device: torch.device | str | None = None, frozen_dtype: torch.dtype | None = None,
         visual_cache: str | os.PathLike | None = None) -> ImageBindLLM:
    """An ImageBindLLM in eval mode with a checkpoint's weights, for inference.

    The phase (and so LLaMA's biases and LoRA) follows from the checkpoint's keys. llama_type None:
    the base the checkpoint records, else the only model folder in llama_dir, else 7B_chinese (the
    base the released checkpoints need). device None: CUDA when available, else the CPU;
    frozen_dtype None: bfloat16 (float16 where unsupported) on CUDA, float32 on the CPU.
    visual_cache: a cache of image embeddings to mix inference embeddings with (this project's
    file or the published knn.index; model/visual_cache.py), off when None.
    """
    from model.files.adapter_checkpoint import read_adapter_checkpoint
    from model.files.build import build_from_files

    checkpoint = read_adapter_checkpoint(checkpoint_path)
    device = torch.device(device) if device is not None else default_device()
    frozen_dtype = frozen_dtype or default_frozen_dtype(device)
    model = build_from_files(llama_dir, llama_type, imagebind_path, checkpoint.phase, imagebind_args=imagebind_args,
                             device=device, frozen_dtype=frozen_dtype, checkpoint=checkpoint)
    if visual_cache is not None:
        model.use_visual_cache(visual_cache)
    return model.eval()
