"""Mixed precision: which dtype a run computes in, the autocast context and the loss scaler.

    bf16  autocast to bfloat16, frozen weights in bfloat16, no loss scaling (GPUs from Ampere on)
    fp16  autocast to float16, frozen weights in float16, loss scaling (older GPUs)
    fp32  no autocast, everything float32 (the CPU)

The trainable tensors stay float32 in every case (the model keeps them so), so the optimizer
always updates float32 master weights.
"""

from __future__ import annotations

import contextlib

import torch

from engine.errors import SetupError
from model import default_frozen_dtype

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
PRECISIONS = tuple(DTYPES)


def default_precision(device: torch.device) -> str:
    """bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU: model.default_frozen_dtype's choice."""
    return {dtype: name for name, dtype in DTYPES.items()}[default_frozen_dtype(device)]


def check_precision(precision: str, device: torch.device) -> str:
    """`precision` if this device can train in it; otherwise a SetupError saying what to pass."""
    if precision not in DTYPES:
        raise SetupError(f"--precision {precision!r} is not one of {', '.join(DTYPES)}")
    if precision == "fp16" and device.type != "cuda":
        raise SetupError("--precision fp16 needs a GPU (its loss scaler is CUDA-only here); use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SetupError("this GPU does not support bfloat16; pass --precision fp16 (or leave --precision unset)")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's context: autocast to the precision's dtype, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler that is active for fp16 only; for the others every call passes through."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
