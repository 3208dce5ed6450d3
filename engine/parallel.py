"""The module the training step calls: the model's loss, safe for empty batches, data-parallel when needed.

DistributedDataParallel all-reduces gradients from hooks that fire as backward reaches each
trainable tensor, and every rank must reach every one of them in every step, or the others wait
forever. A batch whose samples were all bad has no rows (B = 0); `TrainingModule` then returns a
zero loss that still passes through every trainable tensor, so that the rank takes part in the
step with zero gradients.

Only the trainable tensors are shared: `broadcast_trainables` copies rank 0's into every rank once
(DDP's own start-up broadcast would also send the frozen base, gigabytes that every rank already
read from the same files). `check_trainables_agree` confirms after every epoch that the ranks
still hold the same values.
"""

from __future__ import annotations

import inspect
import logging
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.errors import TrainingError
from util.distributed import DistributedContext, gather_from_ranks

logger = logging.getLogger(__name__)

# Never broadcast buffers before a forward: they are the same on every rank. torch 2.14 renamed
# the flag (broadcast_buffers is deprecated there); older releases know only the old name.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


class TrainingModule(nn.Module):
    """`model(tokens, labels, images, has_image)` -> loss, with the empty-batch case above."""

    def __init__(self, model: nn.Module, trainables: Sequence[nn.Parameter]):
        super().__init__()
        self.model = model
        # A plain list, not a ParameterList: the tensors are registered once, inside `model`.
        self._trainables = list(trainables)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, images: torch.Tensor,
                has_image: torch.Tensor) -> torch.Tensor:
        if tokens.shape[0] == 0:  # a host-side shape: no device sync
            return sum(param.sum() for param in self._trainables) * 0.0
        return self.model(tokens, labels, images, has_image)


def broadcast_trainables(trainables: Sequence[nn.Parameter], context: DistributedContext) -> None:
    """Give every rank rank 0's values of the trainable tensors (no-op in a single process)."""
    if not context.distributed:
        return
    with torch.no_grad():
        for param in trainables:
            dist.broadcast(param.data, src=0)


def wrap_for_training(model: nn.Module, trainables: Sequence[nn.Parameter], context: DistributedContext) -> nn.Module:
    """`TrainingModule(model)`, inside DistributedDataParallel when the run has several processes.

    Call broadcast_trainables first: the wrapper skips DDP's start-up broadcast (init_sync=False).
    Buffers (rotary tables, ImageBind's constants) are never broadcast: they are the same everywhere.
    """
    module = TrainingModule(model, trainables)
    if not context.distributed:
        return module
    # No device_ids: with them DDP would copy every input to the GPU, the host-side labels and
    # has_image too (engine/data_source.py keeps them on the CPU so that the step never waits for
    # the device). The module sits on one device, where the batch already is.
    return DistributedDataParallel(module, device_ids=None, init_sync=False, **_NO_BUFFER_SYNC)


@torch.no_grad()
def check_trainables_agree(trainables: Sequence[nn.Parameter], context: DistributedContext) -> None:
    """Raise TrainingError unless every rank holds the same trainable values.

    Compares each tensor's float64 sum and norm across ranks: equal tensors give equal numbers,
    and ranks that drifted apart (a gradient that was not all-reduced) are caught at the epoch's end.
    """
    if not context.distributed:
        return
    fingerprint = torch.stack([torch.stack([param.sum(dtype=torch.float64),
                                            torch.linalg.vector_norm(param, dtype=torch.float64)])
                               for param in trainables]).tolist()  # one device sync
    fingerprints = gather_from_ranks(fingerprint, context)
    differing = [rank for rank, other in enumerate(fingerprints) if other != fingerprints[0]]
    if differing:
        raise TrainingError(f"the trainable tensors of rank(s) {differing} differ from rank 0's: the ranks "
                            "no longer train the same model (a gradient was not all-reduced?)")
    logger.info("the trainable tensors agree on all %d ranks", context.world_size)
