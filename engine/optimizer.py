"""AdamW over the trainable tensors, with the weight-decay rule in one place.

Following timm and the reference: biases and every 1-D tensor (norm weights, gates) get no weight
decay; matrices (and the prefix table) do. The optimizer holds only the phase's trainable tensors,
so its state, and a checkpoint of it, never grows with the frozen model.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

ADAMW_BETAS = (0.9, 0.95)


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether weight decay applies: not to biases, not to 1-D tensors."""
    return param.ndim > 1 and not name.endswith(".bias")


def weight_decay_groups(named_params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Two parameter groups, as the reference orders them: no decay first, then decay."""
    no_decay, decay = [], []
    for name, param in named_params:
        (decay if decays(name, param) else no_decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(named_params: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW(betas 0.9/0.95), the fused kernel on CUDA (one launch for all tensors); `weight_decay`
    was checked with the other flags (engine/flags.py)."""
    groups = weight_decay_groups(named_params, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=ADAMW_BETAS, fused=device.type == "cuda")
