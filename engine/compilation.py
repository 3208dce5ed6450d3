"""--compile: torch.compile block by block, so that one compiled graph serves all the layers.

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
from typing import Callable

import torch

from model.adapter import ImageBindLLM
from model.imagebind import ModalityType

logger = logging.getLogger(__name__)

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
